"""The PyTorch baselines, written here from the papers (no autograd anywhere): what minirso is compared with.

* :class:`TorchSequential` - the same network as a minirso ``Sequential`` (layer for layer, so that
  "forward from layer L" means the same thing), with minirso's weights copied in.
* :class:`TorchRSO` - RSO trials as the authors run them: cache the input of the layer being
  optimised for the whole pool, then per weight set it to w, w + d, w - d in turn and run the
  network from that layer on a fresh mini-batch (three forward passes), summed cross-entropy in
  float64, keep the best.  ``cached=False``: every forward starts from the images.
* :class:`TorchMLP` + :class:`TorchAMC` - the aMC paper's optimizer as the authors' PyTorch code
  does it (sec. III; their public aMC_optimizer.py): every parameter += N(mu, (lambda sigma)^2), one
  forward, accept if the loss did not increase (decided on the host), mu update, sigma decay after
  n_s consecutive rejections; optional signal norm (eq. 17-18) from the same forward pass.
* :func:`rnn_loop` / :func:`torch_rnn` - a tanh RNN as a loop of one matrix product per time step,
  and ``torch.nn.RNN`` (cuDNN on a GPU).
"""

from __future__ import annotations

import math

import numpy
import torch
import torch.nn.functional as TF

from minirso import nn, to_numpy


# ---- a minirso Sequential, rebuilt in torch ------------------------------------------------------
class _GlobalAvgPool(torch.nn.Module):
    def forward(self, x):
        return x.mean(dim=(2, 3))


def _torch_layer(layer):
    """The torch module computing what minirso ``layer`` computes (parameters copied later)."""
    if isinstance(layer, nn.Conv2d):
        return torch.nn.Conv2d(
            layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride, layer.padding, bias=layer.use_bias
        )
    if isinstance(layer, nn.BatchNorm2d):
        # track_running_stats=False: always the statistics of the current batch, nothing updated (as minirso)
        return torch.nn.BatchNorm2d(layer.num_features, eps=layer.eps, track_running_stats=False)
    if isinstance(layer, nn.AvgPool2d):
        return torch.nn.AvgPool2d(layer.kernel_size, layer.stride, layer.padding)
    if isinstance(layer, nn.GlobalAvgPool2d):
        return _GlobalAvgPool()
    if isinstance(layer, nn.ReLU):
        return torch.nn.ReLU()
    if isinstance(layer, nn.Tanh):
        return torch.nn.Tanh()
    if isinstance(layer, nn.Dense):
        return torch.nn.Linear(layer.in_features, layer.out_features, bias=layer.use_bias)
    raise NotImplementedError(f"no torch twin for {type(layer).__name__}")


_TORCH_NAME = {"weight": "weight", "bias": "bias", "gamma": "weight", "beta": "bias"}


class TorchSequential:
    """minirso ``model`` rebuilt in torch on ``device``, with its current parameters.

    ``forward(x, start)`` runs layers ``start..`` on the input of layer ``start``;
    ``flat[name]`` is a flat view of the torch tensor holding minirso parameter ``name``
    (e.g. ``"conv2.weight"``), so a trial can set one element.
    """

    def __init__(self, model, device):
        self.layers = [_torch_layer(l).to(device) for l in model.layers]
        for m in self.layers:
            m.train()  # BatchNorm: batch statistics
            for p in m.parameters():
                p.requires_grad_(False)
        self.flat = {}
        params = to_numpy(model.params)
        for g in model.param_groups:
            module = self.layers[g.layer]
            t = getattr(module, _TORCH_NAME[g.name.rsplit(".", 1)[1]])
            t.copy_(torch.from_numpy(params[g.slice].reshape(g.shape)))
            self.flat[g.name] = t.view(-1)

    def forward(self, x, start: int = 0, stop: int | None = None):
        for m in self.layers[start:stop]:
            x = m(x)
        return x

    __call__ = forward


# ---- RSO ----------------------------------------------------------------------------------------
class TorchRSO:
    """RSO trials in torch, the authors' way (see the module docstring).

    ``prepare(layer)`` caches that layer's input over the pool (chunks of ``chunk``, BatchNorm
    with each chunk's statistics, as the authors); ``trial(name, j, delta, rows)`` scores
    w, w + delta, w - delta of element j of tensor ``name`` on pool rows ``rows`` and keeps the best.
    """

    def __init__(self, net: TorchSequential, x, y, layer_of: dict, cached: bool = True, chunk: int = 2000):
        self.net, self.x, self.y, self.layer_of = net, x, y, layer_of
        self.cached, self.chunk = cached, chunk
        self.layer, self.inputs = 0, x

    @torch.inference_mode()
    def prepare(self, layer: int):
        """Cache the input of ``layer`` for the whole pool (nothing to do without caching, or when the
        cache already holds that layer's input: BatchNorm gamma after beta, as the authors cache per layer)."""
        if not self.cached or layer == 0:
            self.layer, self.inputs = (layer if self.cached else 0), self.x
            return
        if layer == self.layer and self.inputs is not None:
            return
        self.inputs = None  # free the previous cache first
        out = None
        for i in range(0, self.x.shape[0], self.chunk):
            a = self.net.forward(self.x[i : i + self.chunk], 0, layer)
            if out is None:
                out = torch.empty((self.x.shape[0],) + tuple(a.shape[1:]), dtype=a.dtype, device=a.device)
            out[i : i + a.shape[0]] = a
        self.layer, self.inputs = layer, out

    @torch.inference_mode()
    def trial(self, name: str, j: int, delta: float, rows) -> int:
        """One RSO trial; returns the kept candidate (0 = w, 1 = w + delta, 2 = w - delta)."""
        p = self.net.flat[name]
        start = self.layer_of[name] if self.cached else 0
        xb, yb = self.inputs[rows], self.y[rows]  # the batch, gathered once for the three passes
        w = p[j].item()  # host sync, as minirso reads the weight
        cands = (w, w + delta, w - delta)
        losses = []
        for v in cands:
            p[j] = v
            logits = self.net.forward(xb, start)
            losses.append(TF.cross_entropy(logits.double(), yb, reduction="sum").item())  # host sync
        best = 0
        for k in (1, 2):  # strict improvement only: a tie keeps w
            if losses[k] < losses[best]:
                best = k
        p[j] = cands[best]
        return best


# ---- aMC ----------------------------------------------------------------------------------------
class TorchMLP:
    """A minirso ``mlp`` (Dense, LayerNorm, tanh, softmax layers) as a torch function of its tensors.

    ``params``: the list of torch tensors (weights, biases, LayerNorm gamma and beta) in minirso's
    order; ``loss(x, target, stats)`` -> (loss tensor, lambdas or None).  With ``stats`` the
    signal-norm lambdas (aMC eq. 17-18) of every tensor come from the same forward pass: a dense
    weight's neurons all see the layer input, so lambda = <sum_i x_i^2>^(-1/2); LayerNorm gamma_j
    sees xhat_j, lambda_j = <xhat_j^2>^(-1/2); biases and shifts 1.
    """

    def __init__(self, model, device, loss: str = "mse"):
        self.ops, self.params = [], []
        p = to_numpy(model.params)
        for layer in model.layers:
            if isinstance(layer, (nn.Dense, nn.LayerNorm)):
                ts = [
                    torch.from_numpy(p[g.slice].reshape(g.shape).copy()).to(device)
                    for g in model.param_groups
                    if g.name.startswith(layer.name + ".")
                ]
                self.ops.append(
                    ("dense" if isinstance(layer, nn.Dense) else "ln", len(self.params), getattr(layer, "eps", None))
                )
                self.params += ts
            elif isinstance(layer, nn.Tanh):
                self.ops.append(("tanh", None, None))
            elif isinstance(layer, nn.Softmax):
                self.ops.append(("softmax", None, None))
            else:
                raise NotImplementedError(type(layer).__name__)
        self.loss_name = loss

    @torch.inference_mode()
    def forward(self, x, stats: bool = False):
        lam = [None] * len(self.params) if stats else None
        h = x
        for kind, k, eps in self.ops:
            if kind == "dense":
                w, b = self.params[k], self.params[k + 1]
                if stats:
                    q = (h * h).sum(dim=1).mean()
                    lam[k] = torch.where(q > 0, q.rsqrt(), torch.zeros_like(q)).expand_as(w)
                    lam[k + 1] = torch.ones_like(b)
                h = TF.linear(h, w, b)
            elif kind == "ln":
                g, b = self.params[k], self.params[k + 1]
                if stats:
                    xhat = TF.layer_norm(h, g.shape, None, None, eps)
                    q = (xhat * xhat).mean(dim=0)
                    lam[k] = torch.where(q > 0, q.rsqrt(), torch.zeros_like(q))
                    lam[k + 1] = torch.ones_like(b)
                    h = xhat * g + b
                else:
                    h = TF.layer_norm(h, g.shape, g, b, eps)
            elif kind == "tanh":
                h = torch.tanh(h)
            else:
                h = torch.softmax(h, dim=1)
        return h, lam

    @torch.inference_mode()
    def loss(self, x, target, stats: bool = False):
        """``(loss, lambdas)``: MSE against one-hot ``target`` rows, or mean cross-entropy (float64) on labels."""
        out, lam = self.forward(x, stats)
        if self.loss_name == "mse":
            return TF.mse_loss(out, target), lam
        return TF.cross_entropy(out.double(), target), lam


class TorchAMC:
    """The aMC optimizer as the authors' PyTorch code, plus the paper's signal norm when asked.

    ``closure(stats) -> (loss tensor, lambdas)``.  Full batch: the loss of the current parameters
    is kept from the previous step (one forward per step).  Per step: noise_i = mu_i + lambda_i
    sigma z_i for every tensor; params += noise; forward; accept if U' <= U (host decision);
    accept: mu += epsilon (noise - mu), n_cr = 0; reject: params -= noise, n_cr += 1, and after
    n_s rejections sigma *= 0.95, mu = 0.
    """

    def __init__(self, params, closure, sigma0=1e-3, epsilon=1e-2, n_s=20, signal_norm=False, decay=0.95, seed=0):
        self.params, self.closure = params, closure
        self.mu = [torch.zeros_like(p) for p in params]
        self.sigma, self.epsilon, self.n_s, self.decay = sigma0, epsilon, n_s, decay
        self.signal_norm, self.n_cr, self.loss, self.lam = signal_norm, 0, None, None
        self.accepted = self.steps = 0
        self.gen = torch.Generator(device=params[0].device)
        self.gen.manual_seed(seed)

    @torch.inference_mode()
    def step(self) -> bool:
        if self.loss is None:
            u, self.lam = self.closure(self.signal_norm)
            self.loss = u.item()
        noises = []
        for k, (p, mu) in enumerate(zip(self.params, self.mu)):
            z = torch.randn(p.shape, generator=self.gen, device=p.device, dtype=p.dtype)
            scale = self.sigma * self.lam[k] if self.lam is not None else self.sigma
            noise = mu + scale * z
            p.add_(noise)
            noises.append(noise)
        u, lam = self.closure(self.signal_norm)
        u = u.item()  # host sync: the decision is taken on the host
        self.steps += 1
        if math.isfinite(u) and u <= self.loss:
            self.accepted += 1
            self.loss, self.lam, self.n_cr = u, lam, 0
            for mu, noise in zip(self.mu, noises):
                mu.add_(self.epsilon * (noise - mu))
            return True
        for p, noise in zip(self.params, noises):
            p.sub_(noise)
        self.n_cr += 1
        if self.n_cr >= self.n_s:
            self.sigma *= self.decay
            for mu in self.mu:
                mu.zero_()
            self.n_cr = 0
        return False


# ---- RNN ----------------------------------------------------------------------------------------
def rnn_weights(model, device):
    """``([(W_cat^T (I+H, H), b (H,)) per RNN layer], (W_fc, b_fc))`` from ``models.amc_rnn_classifier()``:
    W_cat = [W_ih, W_hh] so that one product ``[x_t, h] W_cat^T`` is one step."""
    p = to_numpy(model.params)
    g = {x.name: p[x.slice].reshape(x.shape) for x in model.param_groups}
    t = lambda a: torch.from_numpy(numpy.ascontiguousarray(a)).to(device)
    cells = [
        (t(numpy.concatenate([g[f"{n}.weight_ih"], g[f"{n}.weight_hh"]], axis=1).T), t(g[f"{n}.bias"]))
        for n in ("rnn1", "rnn2")
    ]
    return cells, (t(g["fc.weight"]), t(g["fc.bias"]))


@torch.inference_mode()
def rnn_loop(x, cells, fc):
    """The 2-layer tanh RNN classifier as a plain loop: ONE matrix product per time step and layer.

    ``h_t = tanh([x_t, h_{t-1}] W_cat^T + b)``; layer 2 reads layer 1's sequence; the last hidden
    state goes through the dense layer.  x (N, T, I) -> logits (N, classes).
    """
    seq = x
    for li, (wt, b) in enumerate(cells):
        n, t_len, _ = seq.shape
        h = torch.zeros((n, wt.shape[1]), dtype=x.dtype, device=x.device)
        last = li == len(cells) - 1
        out = None if last else torch.empty((n, t_len, wt.shape[1]), dtype=x.dtype, device=x.device)
        for t in range(t_len):
            h = torch.tanh(torch.cat([seq[:, t], h], dim=1) @ wt + b)
            if out is not None:
                out[:, t] = h
        seq = h if last else out
    return TF.linear(seq, *fc)


def torch_rnn(model, device):
    """``(torch.nn.RNN, Linear)`` holding the weights of ``models.amc_rnn_classifier()`` (bias_hh = 0)."""
    p = to_numpy(model.params)
    g = {x.name: p[x.slice].reshape(x.shape) for x in model.param_groups}
    hidden = g["rnn1.weight_hh"].shape[0]
    rnn = torch.nn.RNN(g["rnn1.weight_ih"].shape[1], hidden, num_layers=2, nonlinearity="tanh", batch_first=True)
    fc = torch.nn.Linear(hidden, g["fc.weight"].shape[0])
    with torch.no_grad():
        for li, n in enumerate(("rnn1", "rnn2")):
            getattr(rnn, f"weight_ih_l{li}").copy_(torch.from_numpy(g[f"{n}.weight_ih"]))
            getattr(rnn, f"weight_hh_l{li}").copy_(torch.from_numpy(g[f"{n}.weight_hh"]))
            getattr(rnn, f"bias_ih_l{li}").copy_(torch.from_numpy(g[f"{n}.bias"]))
            getattr(rnn, f"bias_hh_l{li}").zero_()
        fc.weight.copy_(torch.from_numpy(g["fc.weight"]))
        fc.bias.copy_(torch.from_numpy(g["fc.bias"]))
    for m in (rnn, fc):
        for q in m.parameters():
            q.requires_grad_(False)
    rnn, fc = rnn.to(device), fc.to(device)
    rnn.flatten_parameters()  # one contiguous weight block, as cuDNN wants
    return rnn, fc


@torch.inference_mode()
def torch_rnn_forward(rnn, fc, x):
    """Logits of the torch.nn.RNN classifier: the last time step of layer 2 into the dense layer."""
    out, _ = rnn(x)
    return fc(out[:, -1])
