"""Fused GPU kernels: CUDA sources shipped with the package, each replacing a launch-bound stretch of array code.

Why.  On a CPU each NumPy operation is a vectorised loop and the array code is the right way; on a GPU each is a
kernel launch of a few microseconds, so small operations cost more in launches than in arithmetic.  Drawing
aMC's proposal with :func:`minirso.random.normal` is about a hundred operations (Philox4x32-10 as array code),
more than the forward pass of the Fig. 1 MLP.  Here such stretches run as ONE kernel each, used only on CuPy and
only while ``MINIRSO_FUSED`` is not ``0``.  The plain code stays the reference, and the callers choose: each
caller tries the kernel where :func:`enabled` says so and runs its plain twin when the kernel's function
returns None (``AMCCore.mu_update_gpu``: False).

The files (package data, read with ``importlib.resources``):

==================  ===================  ======================================  ==========================
source              Python side          kernels                                 plain twin
==================  ===================  ======================================  ==========================
``philox.cuh``      ``elementwise.py``   ``normal``                              ``minirso.random.normal``
(the preamble)      ``optim/amc_core``   ``proposal``, ``proposal_scalar``       ``AMCCore.proposal`` (eq. 9)
                    (beside the plain    ``move``, ``move_scalar``               ``AMCCore``'s move: 3 passes
                    lines they equal)    ``mu_update``                           eq. (10) in ``AMCCore``
``rnn_tanh.cu``     ``rnn.py``           ``rnn_tanh``                            ``RNN``'s per-step loop
``mlp_tail.cu``     ``mlp.py``           ``mlp_tail``                            ``ModelLoss``'s forward
==================  ===================  ======================================  ==========================

Every elementwise kernel is made by :func:`elementwise`, which lists it in :data:`ELEMENTWISE` (aMC's when
``minirso.optim`` is imported, as ``import minirso`` does).

``build.py`` builds each kernel once per array module (memoised) and keeps one failure flag per kernel: a
kernel that fails to compile or launch on some CUDA set-up warns once, naming itself, and only it falls back to
the plain path (:func:`status` says which).  A step of aMC on the Fig. 1 net is then about 5 launches and one
host read (CUDA graphs would remove the launches altogether, but CuPy refuses cuBLAS calls during stream
capture, so a step with a product cannot be captured).

Checking them.  ``philox.cuh`` is plain C that is also CUDA C: ``tests/kernels/test_philox.py`` builds the same
text with the host C compiler and compares it with :mod:`minirso.random` without a GPU (the uint32 words bit for
bit, the normals up to the last bit of libm's float64 ``log`` / ``cos``, proposal, move and eq. (10) bit for bit
given the normals).  The RNN and MLP kernels and the glue of every kernel run on the CPU through the CuPy
stand-in's ``RawKernel`` / ``ElementwiseKernel`` (``tests/standin``: one coroutine per CUDA thread, each running
to its next ``__syncthreads``, guard pages after every array; ``tests/kernels/``).  NVIDIA's NVRTC compiles
every kernel for sm_60, sm_80 and sm_90 (``tests/test_nvrtc.py``), and ``tests/test_gpu.py`` checks each
against the plain path on a device.  CuPy compiles every kernel, its own included, with ``-ftz=true``: float32
results below 1.2e-38 flush to 0 on the GPU, on the fused and the plain path alike.
"""

from __future__ import annotations

from .build import Kernel, all_kernels, compute_capability, enabled, failures, status
from .elementwise import ELEMENTWISE, NORMAL_OPERATION, PHILOX_SOURCE, Elementwise, elementwise, normal
from .mlp import MLP_MAX_WIDTH, MLP_SOURCE, MLP_THREADS, mlp_tail
from .rnn import RNN_MIN_CAPABILITY, RNN_SOURCE, rnn_launch_shape, rnn_tanh

__all__ = [
    "PHILOX_SOURCE",
    "NORMAL_OPERATION",
    "ELEMENTWISE",
    "Elementwise",
    "elementwise",
    "RNN_SOURCE",
    "MLP_SOURCE",
    "RNN_MIN_CAPABILITY",
    "MLP_MAX_WIDTH",
    "MLP_THREADS",
    "Kernel",
    "all_kernels",
    "failures",
    "enabled",
    "status",
    "compute_capability",
    "normal",
    "rnn_tanh",
    "rnn_launch_shape",
    "mlp_tail",
]
