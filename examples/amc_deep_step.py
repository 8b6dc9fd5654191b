"""aMC trains deep narrow tanh nets on a step function, if signal norm is on: the aMC paper's Fig. 6 (sec. II E).

Run:  python examples/amc_deep_step.py --compare          (signal norm on AND off, depth 32: 52 s, 2 CPU cores)
      python examples/amc_deep_step.py --depth 64 --no-signal-norm
      python examples/amc_deep_step.py --smoke --json out/deep_step.json   (CI: 0.5 s)

The task: one input theta in [0, 1], one output f_x(theta), target the step

    f0(theta) = 1/2  if 1/2 < theta < 3/4,  else 0,

loss U = mean-squared error over 1,000 evenly spaced theta (full batch; the
paper does not give the number of points for Fig. 6, 1,000 is its sine task's).
The net (``minirso.models.amc_deep_tanh(depth)``) is deep and narrow: ``depth``
hidden layers of 4 tanh neurons, the last hidden one of 10, and a tanh output;
parameters start as N(0, sigma0^2), sigma0 = 1e-2 (``--init kaiming`` for the
paper's other start).  Gradients through so many tiny tanh layers all but vanish.

aMC runs with the figure's (sigma0, epsilon, n_s) = (1e-2, 1e-2, 100), signal
norm on (default) or off (``--no-signal-norm``).  With signal norm off every
parameter moves by sigma ~ 1e-2, so the first layers' changes are far too small
to reach the output through 30 tiny layers (and the last layers' too large),
and the net stays at the best constant output (U = 0.0469).  Signal norm
(eqs. 17-18) scales each weight's step by 1 / (RMS of the signal entering its
neuron), so every neuron's input changes by about sigma: the deep net learns.

What to expect (measured: ``--compare`` with the defaults, depth 32, 20,000 steps, seed 0, NumPy, 2 CPU cores):

    signal norm on :  U = 3.33e-03, acceptance 0.021 (30 s); f_x(0.25, 0.55, 0.625, 0.7, 0.9) =
                      -0.03, +0.48, +0.52, +0.51, +0.01: the step is drawn
    signal norm off:  U = 4.69e-02, acceptance 0.020 (22 s); f_x = +0.125 everywhere: the best
                      constant, nothing learned

The paper runs 10^6 steps (``--steps 1000000``, about 25 minutes on this CPU at
depth 32) and depths up to 128, where the outcome is stochastic ("nucleation"):
try several ``--seed``.  ``--json PATH`` writes ``final_loss`` (and, with
``--compare``, ``final_loss_signal_norm_off``).
"""

import argparse
import time

import numpy as np

import minirso
from minirso.models import amc_deep_tanh
from minirso.optim import AMC, ModelLoss
from minirso.train import write_metrics


def step_task(n_points=1000):
    """(theta, f0(theta)) as (n_points, 1) float32 arrays on the active backend."""
    theta = np.linspace(0, 1, n_points, dtype=np.float32).reshape(-1, 1)  # (n, 1)
    target = np.where((theta > 0.5) & (theta < 0.75), 0.5, 0.0).astype(np.float32)  # (n, 1)
    return minirso.asarray(theta), minirso.asarray(target)


def train(depth, signal_norm, steps, init, seed, log_lines=5):
    theta, target = step_task()
    net = amc_deep_tanh(depth, seed=seed, init=init)
    loss = ModelLoss(net, theta, target, loss="mse")  # U(x) over all 1,000 points
    opt = AMC(net.params, loss, sigma0=1e-2, epsilon=1e-2, n_s=100, signal_norm=signal_norm, seed=seed)
    name = "signal norm " + ("on " if signal_norm else "off")
    print(f"{name}: depth {depth}, {net.num_params} parameters")
    t0 = time.perf_counter()
    every = max(1, steps // log_lines)
    for n in range(1, steps + 1):
        opt.step()  # one proposal for ALL parameters, kept if U does not increase
        if n % every == 0 or n == steps:
            print(f"  step {n:8,d}: U = {opt.loss:.3e}, acceptance {opt.acceptance_rate:.3f}, sigma {opt.sigma:.2e}")
    wall = time.perf_counter() - t0
    # what the net draws: its output at a few theta (the step is 0.5 on (0.5, 0.75))
    probe = minirso.asarray(np.array([[0.25], [0.55], [0.625], [0.7], [0.9]], np.float32))
    out = minirso.to_numpy(net(probe)).ravel()
    print(
        "  f_x(theta) at theta = 0.25, 0.55, 0.625, 0.7, 0.9: "
        + ", ".join(f"{v:+.3f}" for v in out)
        + "   (target 0, .5, .5, .5, 0)"
    )
    print(f"  {steps} steps in {wall:.1f} s: final U = {opt.loss:.3e}")
    return {
        "final_loss": opt.loss,
        "acceptance": opt.acceptance_rate,
        "sigma": opt.sigma,
        "wall_time": wall,
        "num_params": net.num_params,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depth", type=int, default=32, help="hidden layers (the paper: 2 to 128)")
    parser.add_argument("--steps", type=int, default=20_000, help="aMC steps (the paper: 10^6)")
    parser.add_argument("--no-signal-norm", action="store_true", help="lambda_i = 1 for all parameters")
    parser.add_argument("--compare", action="store_true", help="run signal norm on, then off, from the same start")
    parser.add_argument(
        "--init",
        choices=["gaussian", "kaiming"],
        default="gaussian",
        help="N(0, sigma0^2) (default) or Kaiming, the paper's two starts",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--backend", choices=["numpy", "cupy"])
    parser.add_argument("--json", metavar="PATH", help="write the final metrics here as JSON")
    parser.add_argument("--smoke", action="store_true", help="a run of about a second for CI (depth 8, 300 steps)")
    args = parser.parse_args()
    if args.smoke:
        args.depth, args.steps = min(args.depth, 8), min(args.steps, 300)
    if args.backend:
        minirso.use_backend(args.backend)
    init = ("gaussian", 1e-2) if args.init == "gaussian" else "kaiming"
    print(
        f"backend {minirso.backend_name()}; step function, 1,000 points; aMC (sigma0, epsilon, n_s) = "
        f"(1e-2, 1e-2, 100); {args.steps} steps"
    )
    t0 = time.perf_counter()
    main_run = train(args.depth, not args.no_signal_norm, args.steps, init, args.seed)
    result = {
        "example": "amc_deep_step",
        "backend": minirso.backend_name(),
        "steps": args.steps,
        "depth": args.depth,
        "signal_norm": not args.no_signal_norm,
        "init": args.init,
        "seed": args.seed,
        "smoke": args.smoke,
        **main_run,
    }
    if args.compare:
        other = train(args.depth, args.no_signal_norm, args.steps, init, args.seed)
        key = "signal_norm_" + ("on" if args.no_signal_norm else "off")
        result.update({f"final_loss_{key}": other["final_loss"], f"acceptance_{key}": other["acceptance"]})
    result["wall_time"] = time.perf_counter() - t0
    if args.json:
        print(f"wrote {write_metrics(args.json, result)}")


if __name__ == "__main__":
    main()
