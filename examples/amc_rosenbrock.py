"""aMC's momentum-like epsilon on the Rosenbrock function: the aMC paper's Fig. 3 (sec. II C).

Run:  python examples/amc_rosenbrock.py                 (about 4 s on a 2-core laptop CPU)
      python examples/amc_rosenbrock.py --smoke --json out/rosenbrock.json   (CI: 0.4 s)

aMC is not only for neural nets: it moves ANY flat parameter array and needs
only a loss callable.  Here the "network" is one particle at (x, y) and the
loss is the Rosenbrock function (eq. 6)

    f(x, y) = (1 - x)^2 + 100 (y - x^2)^2,    global minimum f = 0 at (1, 1),

whose minimum lies at the end of a long, flat, curved valley: gradient descent
reaches the valley fast and then crawls along its floor.  The particle starts
at (-2, 2), outside the valley, and aMC runs with sigma0 = 1e-3 and n_s = 20
(the figure's caption; the text says n_s = 100: ``--n-s 100``) for three
values of epsilon, the rate at which the proposal mean mu follows accepted
moves (eq. 10).  epsilon = 0 is Metropolis with aMC's step-size schedule; a
positive epsilon builds up "momentum" along the valley.  The paper does not
give its three epsilons; 0, 0.01 and 0.1 are used here.

What to expect (measured with the defaults: seed 0, 10,000 steps each, NumPy, 2 CPU cores, 4.3 s):

    epsilon   f(100)    f(1000)   f(2000)   f(10000)  first f < 1e-3  acceptance
    0         3.4e+02   3.0e+01   5.7e+00   5.1e-01   never           0.433
    0.01      3.2e+02   5.5e+00   3.0e+00   5.6e-21   3,754           0.246
    0.1       1.9e+02   6.2e-01   9.2e-10   1.4e-26   1,206           0.097

The larger epsilon, the sooner the minimum is reached, and the gap between
epsilon = 0 and epsilon > 0 is large: the paper's finding.  (Fig. 3(a) shows the
first 2,000 steps, Fig. 3(b) continues to 10^4; both are in the table.)
``--json PATH`` writes the per-epsilon results and ``final_loss``, the smallest
final f over the runs.
"""

import argparse
import time

import numpy as np

import minirso
from minirso.optim import AMC
from minirso.train import write_metrics


def rosenbrock(p) -> float:
    """Eq. (6) of the aMC paper; ``p`` is the flat array (x, y) that aMC moves in place."""
    x, y = float(p[0]), float(p[1])  # one host read of two numbers (also on CuPy)
    return (1.0 - x) ** 2 + 100.0 * (y - x * x) ** 2


def run(epsilon, steps, sigma0, n_s, seed, checkpoints):
    """One aMC trajectory from (-2, 2); returns f at the checkpoints and when f first fell below 1e-3."""
    xp = minirso.backend.xp()
    p = xp.asarray(np.array([-2.0, 2.0]))  # float64 (2,): the particle; aMC changes it in place
    opt = AMC(p, rosenbrock, sigma0=sigma0, epsilon=epsilon, n_s=n_s, seed=seed)
    f_at, first_below = {}, None
    for n in range(1, steps + 1):
        info = opt.step()  # propose p + N(mu, sigma^2), keep it if f does not increase
        if first_below is None and info["loss"] < 1e-3:
            first_below = n
        if n in checkpoints:
            f_at[n] = info["loss"]
    return {
        "epsilon": epsilon,
        "final_loss": opt.loss,
        "f_at": f_at,
        "first_below_1e-3": first_below,
        "acceptance": opt.acceptance_rate,
        "sigma": opt.sigma,
        "position": minirso.to_numpy(p).tolist(),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10_000, help="aMC steps per epsilon (Fig. 3(b): 10^4)")
    parser.add_argument("--epsilon", type=float, nargs="+", default=[0.0, 0.01, 0.1])
    parser.add_argument("--sigma0", type=float, default=1e-3)
    parser.add_argument("--n-s", type=int, default=20, help="consecutive rejections before sigma *= 0.95")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--backend", choices=["numpy", "cupy"])
    parser.add_argument("--json", metavar="PATH", help="write the final metrics here as JSON")
    parser.add_argument("--smoke", action="store_true", help="a run of a second for CI (500 steps)")
    args = parser.parse_args()
    if args.smoke:
        args.steps = min(args.steps, 500)
    if args.backend:
        minirso.use_backend(args.backend)
    checkpoints = [n for n in (100, 1000, 2000, args.steps) if n <= args.steps]
    print(
        f"backend {minirso.backend_name()}; Rosenbrock from (-2, 2); sigma0 {args.sigma0}, n_s {args.n_s}; "
        f"{args.steps} steps per epsilon"
    )
    head = "".join(f"f({n})".ljust(10) for n in dict.fromkeys(checkpoints))
    print(f"  {'epsilon':8s}  {head}first f < 1e-3  acceptance")
    t0 = time.perf_counter()
    runs = []
    for eps in args.epsilon:
        r = run(eps, args.steps, args.sigma0, args.n_s, args.seed, set(checkpoints))
        runs.append(r)
        cols = "".join(f"{r['f_at'][n]:<10.1e}" for n in dict.fromkeys(checkpoints))
        first = "never" if r["first_below_1e-3"] is None else f"{r['first_below_1e-3']:,}"
        print(f"  {eps:<8g}  {cols}{first:16s}{r['acceptance']:.3f}")
    wall = time.perf_counter() - t0
    best = min(runs, key=lambda r: r["final_loss"])
    print(
        f"{wall:.1f} s; lowest final f = {best['final_loss']:.2e} with epsilon = {best['epsilon']:g}, "
        f"at (x, y) = ({best['position'][0]:.4f}, {best['position'][1]:.4f})"
    )
    if args.json:
        path = write_metrics(
            args.json,
            {
                "example": "amc_rosenbrock",
                "backend": minirso.backend_name(),
                "wall_time": wall,
                "steps": args.steps,
                "sigma0": args.sigma0,
                "n_s": args.n_s,
                "seed": args.seed,
                "smoke": args.smoke,
                "final_loss": best["final_loss"],
                "best_epsilon": best["epsilon"],
                "runs": [dict(r, f_at={str(n): f for n, f in r["f_at"].items()}) for r in runs],
            },
        )
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
