"""CPU vs GPU, serial vs parallel (book section 2.1): one professor or a team of pupils.

    python -m ch02_gpu.parallel            # n = 128
    python -m ch02_gpu.parallel --smoke    # n = 48

2.1.2/2.1.3: the same matrix product computed serially (a Python triple loop, one multiply-add at a
time: the professor), by a vectorised kernel on one core, on every core, and on the GPU when present
(the team: thousands of independent multiply-adds at once). 2.1.4: a task GPUs are bad at, a
recurrence ``x[t+1] = a * x[t] + b`` where every step needs the previous one: no parallelism to find,
and per-operation launch overhead makes the "team" slower than the professor.
"""

from __future__ import annotations

import torch

from common.bench import stamp_dict, time_fn
from common.cli import add_common_args, friendly_errors, make_parser, positive_int
from common.device import has_cuda
from common.report import emit_json, print_table


def matmul_serial(a: list[list[float]], b: list[list[float]]) -> list[list[float]]:
    """The naive reference: one multiply-add at a time."""
    n, k, m = len(a), len(b), len(b[0])
    out = [[0.0] * m for _ in range(n)]
    for i in range(n):
        for j in range(m):
            s = 0.0
            for p in range(k):
                s += a[i][p] * b[p][j]
            out[i][j] = s
    return out


def recurrence_python(steps: int, a: float = 0.999, b: float = 0.001) -> float:
    x = 0.0
    for _ in range(steps):
        x = a * x + b
    return x


def recurrence_tensor(steps: int, device: str = "cpu", a: float = 0.999, b: float = 0.001) -> float:
    """The same recurrence as one tiny tensor op per step: a launch per step, nothing to parallelise."""
    x = torch.zeros((), device=device)
    for _ in range(steps):
        x = x * a + b
    return float(x)


def main(argv: list[str] | None = None) -> int:
    parser = make_parser("python -m ch02_gpu.parallel", __doc__)
    add_common_args(parser, model=False, smoke=True)
    parser.add_argument("--n", type=positive_int, default=128, help="matrix size (n x n)")
    parser.add_argument("--steps", type=positive_int, default=20000, help="recurrence steps")
    args = parser.parse_args(argv)
    with friendly_errors():
        n = 48 if args.smoke else args.n
        steps = 2000 if args.smoke else args.steps
        torch.manual_seed(args.seed)
        a, b = torch.randn(n, n), torch.randn(n, n)
        al, bl = a.tolist(), b.tolist()
        ref = torch.tensor(matmul_serial(al, bl))
        torch.testing.assert_close(a @ b, ref, rtol=1e-4, atol=1e-3)  # same answer, different speed
        threads = torch.get_num_threads()
        rows = []
        serial = time_fn(lambda: matmul_serial(al, bl), repeats=1, warmup=0).best
        rows.append({"matmul": "serial Python loop (professor)", "seconds": serial, "speed-up": 1.0})
        torch.set_num_threads(1)
        one = time_fn(lambda: a @ b, repeats=5).best
        torch.set_num_threads(threads)
        many = time_fn(lambda: a @ b, repeats=5).best
        rows.append({"matmul": "vectorised, 1 core", "seconds": one, "speed-up": serial / one})
        rows.append({"matmul": f"vectorised, {threads} cores", "seconds": many, "speed-up": serial / many})
        if has_cuda():
            ag, bg = a.cuda(), b.cuda()
            gpu = time_fn(lambda: ag @ bg, repeats=5, device="cuda").best
            rows.append({"matmul": "GPU", "seconds": gpu, "speed-up": serial / gpu})
        elif not args.json:
            print("No CUDA GPU here: the GPU row is skipped.")
        rec_py = time_fn(lambda: recurrence_python(steps), repeats=3).best
        rec_t = time_fn(lambda: recurrence_tensor(steps), repeats=3).best
        rec = [{"recurrence": "Python floats", "seconds": rec_py},
               {"recurrence": "one tensor op per step", "seconds": rec_t}]
        if has_cuda():
            rec.append({"recurrence": "one GPU op per step",
                        "seconds": time_fn(lambda: recurrence_tensor(steps, "cuda"), repeats=3, device="cuda").best})
        if not args.json:
            print_table(rows, title=f"2.1.2-2.1.3: {n}x{n} matmul ({2 * n**3:,} FLOPs)")
            print_table(rec, title=f"2.1.4: {steps} dependent steps (no parallelism to exploit)")
        emit_json({"n": n, "matmul": rows, "recurrence": rec, "hardware": stamp_dict(dtype="fp32")})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
