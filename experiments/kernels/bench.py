"""Benchmark of the SSD scan backends on Mamba-2 shapes of an 8B layer, side by side in one process.

    PYTHONPATH=src:.third_party/mamba_ssm_stub python experiments/kernels/bench.py --out DIR

One run does, in order (writing results under DIR as it goes, so a run cut short keeps what it measured):
  1. the HBM copy peak (a large device-to-device copy, bytes read + written);
  2. correctness: own kernels vs torch_ref (small shape, fp32 and bf16, values and all gradients), own kernels
     and mamba-ssm vs torch_chunked (fp32 math) at a benchmark shape, the decode step vs the reference;
  3. a sweep of the own kernels' launch configurations at seq 8K;
  4. the table: forward and forward+backward time of torch_chunked, own triton and mamba-ssm's
     mamba_chunk_scan_combined (Triton), with ratios and effective GB/s (fewest bytes / time) vs the peak;
  5. decode-step times.
Times are medians of triton.testing.do_bench. mamba-ssm is optional (its rows say "n/a" without it).
`--dry-run` runs every step on tiny shapes on CPU (TRITON_INTERPRET=1) to check the script itself.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import json
import statistics
import time
from pathlib import Path

import torch

import hybrid_distill.kernels.ssd as ssd
from hybrid_distill.ops import BACKENDS, ssd_scan, ssd_step
from hybrid_distill.ops.ssd_chunked import ssd_scan_chunked
from hybrid_distill.ops.ssd_ref import ssd_scan_ref, ssd_step_ref

# d_model 4096, expand 2 -> d_inner 8192 = 128 heads x 64; d_state 128
FULL = dict(nheads=128, headdim=64, dstate=128, seqlens=(2048, 4096, 8192, 16384), batches=(1, 8), groups=(1, 8))
DRY = dict(nheads=4, headdim=16, dstate=16, seqlens=(64, 130), batches=(1, 2), groups=(1, 2))
BACKEND_NAMES = ("torch_chunked", "triton", "mamba_ssm")


def rel_err(out, ref) -> float:
    out, ref = out.double(), ref.double()
    return ((out - ref).norm() / ref.norm().clamp_min(1e-30)).item()


def make_inputs(batch, seqlen, nheads, headdim, dstate, gb, gc, dtype, device, with_state=False, seed=0):
    """Mamba-2-like inputs: activations in `dtype`, parameters fp32; softplus(dt + dt_bias) in about [1e-3, 0.3]."""
    g = torch.Generator(device=device).manual_seed(seed)

    def rnd(*shape, scale=1.0, shift=0.0, dt=dtype):
        return (torch.randn(*shape, generator=g, device=device) * scale + shift).to(dt)

    f32 = torch.float32
    return dict(
        x=rnd(batch, seqlen, nheads, headdim),
        dt=rnd(batch, seqlen, nheads, scale=0.5, shift=-1.0),
        A=-torch.exp(torch.rand(nheads, generator=g, device=device) * 2.77),
        B=rnd(batch, seqlen, gb, dstate),
        C=rnd(batch, seqlen, gc, dstate),
        D=rnd(nheads, dt=f32),
        dt_bias=rnd(nheads, scale=0.5, shift=-2.0, dt=f32),
        initial_state=rnd(batch, nheads, headdim, dstate, scale=0.5, dt=f32) if with_state else None,
    )


def outputs_and_grads(fn, inputs, final: bool):
    leaves = {k: v.detach().clone().requires_grad_(True) if v is not None else None for k, v in inputs.items()}
    out = fn(**leaves, dt_softplus=True, return_final_state=final)
    y, fin = out if final else (out, None)
    g = torch.Generator(device=y.device).manual_seed(1)
    loss = (y.float() * torch.randn(y.shape, generator=g, device=y.device)).sum()
    if fin is not None:
        loss = loss + (fin.float() * torch.randn(fin.shape, generator=g, device=y.device)).sum()
    loss.backward()
    grads = {f"d{k}": v.grad for k, v in leaves.items() if v is not None}
    return {"y": y.detach(), **({"final": fin.detach()} if final else {}), **grads}


def compare(name, fn, ref_fn, inputs, final, tol, log) -> bool:
    got, ref = outputs_and_grads(fn, inputs, final), outputs_and_grads(ref_fn, inputs, final)
    errs = {k: rel_err(got[k], ref[k]) for k in ref}
    ok = all(e < tol and torch.isfinite(got[k].float()).all() for k, e in errs.items())
    log(
        f"  {'ok  ' if ok else 'FAIL'} {name}: max rel err {max(errs.values()):.1e} (tol {tol:.0e}) "
        + " ".join(f"{k}={e:.1e}" for k, e in errs.items())
    )
    return ok


def backend_fn(name):
    return lambda **kw: ssd_scan(**kw, backend=name)


class Timer:
    """Median time in ms: triton.testing.do_bench on CUDA; a few wall-clock runs on CPU (dry run)."""

    def __init__(self, cuda: bool):
        self.cuda = cuda

    def __call__(self, fn) -> float:
        if self.cuda:
            import triton.testing

            return triton.testing.do_bench(fn, warmup=25, rep=100, return_mode="median")
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
        return statistics.median(times)


@contextlib.contextmanager
def launch_configs(fwd=None, bwd=None):
    """Rebind the own kernels' module-default launch configurations for the duration of a block."""
    saved = ssd.FWD_CONFIG, ssd.BWD_CONFIG, ssd.BWD_CONFIG_MANY
    if fwd is not None:
        ssd.FWD_CONFIG = fwd
    if bwd is not None:
        ssd.BWD_CONFIG = ssd.BWD_CONFIG_MANY = bwd  # the given one whatever the number of programs
    try:
        yield
    finally:
        ssd.FWD_CONFIG, ssd.BWD_CONFIG, ssd.BWD_CONFIG_MANY = saved


def hbm_peak_gbs(timer, device, dry) -> float:
    n = (1 << 20) if dry else (1 << 31)  # 4 GiB of bf16 per buffer on the GPU
    src = torch.randn(n, device=device).to(torch.bfloat16)
    dst = torch.empty_like(src)
    ms = timer(lambda: dst.copy_(src))
    return 2 * src.numel() * src.element_size() / ms / 1e6


def fwd_bytes(batch, seqlen, nheads, headdim, dstate, gb, gc) -> int:
    # fewest bytes of a bf16 forward: read x, dt, B, C; write y
    return 2 * batch * seqlen * (2 * nheads * headdim + nheads + (gb + gc) * dstate)


def rotating(inputs_list):
    """Cycle through input sets so that repeated calls do not all hit the L2 cache."""
    state = {"i": 0}

    def next_inputs():
        state["i"] = (state["i"] + 1) % len(inputs_list)
        return inputs_list[state["i"]]

    return next_inputs


def bench_inputs(batch, seqlen, nheads, headdim, dstate, groups, device, seed=0):
    """(inputs with gradients on, dy) for timing forward+backward."""
    inputs = make_inputs(batch, seqlen, nheads, headdim, dstate, groups, groups, torch.bfloat16, device, seed=seed)
    for v in inputs.values():
        if v is not None:
            v.requires_grad_(True)
    return inputs, torch.randn_like(inputs["x"])


def time_backend(name, timer, sets, modes=("fwd", "fwd_bwd")):
    """{mode: ms} of one backend over rotating input sets (ms None where memory ran out)."""
    fn = backend_fn(name)
    next_set = rotating(sets)

    def fwd():
        with torch.no_grad():
            fn(**next_set()[0], dt_softplus=True)

    def fwd_bwd():
        inputs, dy = next_set()
        fn(**inputs, dt_softplus=True).backward(dy)
        for v in inputs.values():
            if v is not None:
                v.grad = None

    out = {}
    for mode in modes:
        try:
            out[mode] = timer(fwd if mode == "fwd" else fwd_bwd)
        except torch.cuda.OutOfMemoryError:
            out[mode] = None
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    return out


def triton_outputs(inputs, dy):
    """y and the gradients of the own kernels under the current launch configurations."""
    y = ssd_scan(**inputs, dt_softplus=True, backend="triton")
    grads = torch.autograd.grad(y, [inputs[k] for k in ("x", "dt", "A", "B", "C", "D", "dt_bias")], dy)
    return y.detach(), grads


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--dry-run", action="store_true", help="tiny shapes on CPU under TRITON_INTERPRET=1")
    parser.add_argument("--budget-s", type=float, default=480.0, help="stop starting table rows after this")
    parser.add_argument(
        "--sections",
        default="checks,sweep,table,step",
        help="comma list of: checks, sweep, table, step, profile (one fwd and one fwd+bwd at B=1, 8K "
        "for a profiler such as ncu)",
    )
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.time()
    cfg = DRY if args.dry_run else FULL
    cuda = torch.cuda.is_available() and not args.dry_run
    device = "cuda" if cuda else "cpu"
    timer = Timer(cuda)
    H, P, N = cfg["nheads"], cfg["headdim"], cfg["dstate"]
    results = {
        "date": datetime.date.today().isoformat(),
        "device": torch.cuda.get_device_name() if cuda else "cpu",
        "torch": torch.__version__,
        "triton": __import__("triton").__version__,
        "checks": [],
        "sweep": [],
        "table": [],
        "step": [],
    }
    lines = []

    sections = set(args.sections.split(","))

    def log(msg=""):
        if msg.startswith("#"):
            msg += f"  [t={time.time() - start:.0f}s]"
        print(msg, flush=True)
        lines.append(msg)
        (args.out / "bench_log.md").write_text("\n".join(lines) + "\n")
        (args.out / "bench.json").write_text(json.dumps(results, indent=1, default=str))

    have_mamba = BACKENDS["mamba_ssm"].is_available()
    names = [n for n in BACKEND_NAMES if n != "mamba_ssm" or have_mamba]
    log(
        f"# SSD scan benchmark: {results['device']}, {results['date']}, torch {results['torch']}, "
        f"triton {results['triton']}, mamba_ssm {'yes' if have_mamba else 'not importable'}"
    )

    if "profile" in sections:
        inputs, dy = bench_inputs(1, 8192 if not args.dry_run else 130, H, P, N, 1, device)
        for _ in range(2):  # compile, then the launches to profile
            ssd_scan(**inputs, dt_softplus=True, backend="triton").backward(dy)
        torch.cuda.synchronize() if cuda else None
        log("# profile launches done")
        return

    # 1. HBM peak
    results["hbm_peak_gbs"] = peak = hbm_peak_gbs(timer, device, args.dry_run)
    log(f"HBM copy peak: {peak:.0f} GB/s (read + write)")

    # 2. correctness
    if "checks" in sections:
        run_checks(names, H, P, N, device, args.dry_run, results, log)

    # 3. launch-configuration sweep of the own kernels at seq 8K (each checked against the default's output)
    best = sweep(cfg, H, P, N, device, args.dry_run, timer, results, log) if "sweep" in sections else {}

    # 4. the table
    if "table" in sections:
        table(cfg, H, P, N, device, names, best, timer, peak, start, args.budget_s, results, log)

    # 5. decode step
    if "step" in sections:
        step_times(cfg, H, P, N, device, names, timer, results, log)
    log(f"\n# total wall time {time.time() - start:.0f} s")


def run_checks(names, H, P, N, device, dry_run, results, log):
    log("\n## correctness")
    small = (2, 300, 8, 64, 32, 1, 2) if not dry_run else (1, 40, 4, 16, 16, 1, 2)
    for dtype, tol in ((torch.float32, 2e-5), (torch.bfloat16, 3e-2)):
        inputs = make_inputs(*small, dtype, device, with_state=True)
        for name in names[1:]:
            tol_b = 5e-3 if (name == "mamba_ssm" and dtype == torch.float32) else tol  # mamba-ssm dots in tf32
            ok = compare(
                f"{name} vs torch_ref {str(dtype)[6:]} {small}",
                backend_fn(name),
                ssd_scan_ref,
                inputs,
                True,
                tol_b,
                log,
            )
            results["checks"].append((name, "torch_ref", str(dtype), ok))
    big = (1, 4096 if not dry_run else 200, H, P, N, 8 if not dry_run else 2, 8 if not dry_run else 2)
    inputs = make_inputs(*big, torch.bfloat16, device)
    for name in names[1:]:
        ok = compare(
            f"{name} vs torch_chunked (fp32 math) bf16 {big}",
            backend_fn(name),
            ssd_scan_chunked,
            inputs,
            False,
            3e-2,
            log,
        )
        results["checks"].append((name, "torch_chunked", "bf16", ok))
    st = make_inputs(8, 1, H, P, N, 1, 1, torch.bfloat16, device, with_state=True)
    step_args = (st["x"][:, 0], st["dt"][:, 0], st["A"], st["B"][:, 0], st["C"][:, 0], st["D"], st["dt_bias"], True)
    y_ref, s_ref = ssd_step_ref(st["initial_state"], *step_args)
    for name in names[1:]:
        y, s = ssd_step(st["initial_state"], *step_args, backend=name)
        errs = (rel_err(y, y_ref), rel_err(s, s_ref))
        ok = max(errs) < 3e-2
        log(f"  {'ok  ' if ok else 'FAIL'} {name} decode step vs reference: y {errs[0]:.1e}, state {errs[1]:.1e}")
        results["checks"].append((name, "step", "bf16", ok))


def sweep(cfg, H, P, N, device, dry_run, timer, results, log):
    """Launch configurations of the own kernels at seq 8K, each checked against the default's outputs."""
    log("\n## own-kernel launch configurations, seq 8K, ngroups 1, bf16")
    sweep_len = 8192 if not dry_run else 130
    best = {}
    fwd_space = [ssd.LaunchConfig(*c) for c in ((32, 64, 4, 2), (64, 64, 4, 2), (64, 64, 8, 2), (32, 64, 4, 3))]
    bwd_space = [ssd.LaunchConfig(*c) for c in ((32, 64, 8, 2), (32, 64, 4, 2), (16, 64, 4, 2))]
    if dry_run:
        fwd_space, bwd_space = fwd_space[:2], bwd_space[:2]
    for batch in cfg["batches"]:
        inputs, dy = bench_inputs(batch, sweep_len, H, P, N, 1, device)
        y_default, grads_default = triton_outputs(inputs, dy)
        for kind, space in (("fwd", fwd_space), ("bwd", bwd_space)):
            for conf in space:
                ctx = launch_configs(fwd=conf) if kind == "fwd" else launch_configs(bwd=conf)
                try:
                    with ctx:
                        y, grads = triton_outputs(inputs, dy)
                        err = max(rel_err(y, y_default), *(rel_err(a, b) for a, b in zip(grads, grads_default)))
                        mode = "fwd" if kind == "fwd" else "fwd_bwd"
                        ms = time_backend("triton", timer, [(inputs, dy)], modes=(mode,))[mode]
                except Exception as e:  # a configuration that does not compile (e.g. too much shared memory)
                    log(f"  {kind} B={batch} {conf}: failed: {type(e).__name__}: {str(e)[:120]}")
                    continue
                ok = err < 1e-2 and ms is not None
                results["sweep"].append(dict(kind=kind, batch=batch, config=dataclasses.asdict(conf), ms=ms, err=err))
                log(
                    f"  {kind} B={batch} chunk={conf.chunk} block_p={conf.block_p} warps={conf.num_warps} "
                    f"stages={conf.num_stages}: {fmt(ms)} ms{'' if ok else f'  WRONG (rel err {err:.1e})'}"
                )
                if ok and (best.get((kind, batch)) is None or ms < best[(kind, batch)][1]):
                    best[(kind, batch)] = (conf, ms)
        del inputs
        log(f"  best B={batch}: fwd {best.get(('fwd', batch))}, fwd+bwd {best.get(('bwd', batch))}")
    return best


def table(cfg, H, P, N, device, names, best, timer, peak, start, budget_s, results, log):
    log("\n## forward and forward+backward, bf16, H=128 P=64 N=128, dt_softplus, D, dt_bias; ms (median)")
    header = (
        "| batch | seq | ngroups | chunked fwd | triton fwd | mamba fwd | mamba/triton fwd "
        "| triton GB/s (% peak) | mamba GB/s (% peak) | chunked fwd+bwd | triton fwd+bwd | mamba fwd+bwd "
        "| mamba/triton fwd+bwd |"
    )
    log(header)
    log("|" + "---|" * (header.count("|") - 1))
    shapes = [(b, L, 1) for L in cfg["seqlens"] for b in cfg["batches"]]
    shapes += [(b, cfg["seqlens"][-2], g) for g in cfg["groups"][1:] for b in cfg["batches"]]
    shapes.sort(key=lambda s: (s[1] != cfg["seqlens"][-2], s))  # the 8K rows first (the target)
    for batch, seqlen, groups in shapes:
        if time.time() - start > budget_s:
            log(f"(time budget reached: rows from B={batch} L={seqlen} G={groups} on not measured)")
            break
        one = fwd_bytes(batch, seqlen, H, P, N, groups, groups)
        nsets = max(1, min(4, -(-256 * 2**20 // one)))  # >= 256 MiB of inputs in rotation: more than the L2
        sets = [bench_inputs(batch, seqlen, H, P, N, groups, device, seed=i) for i in range(nsets)]
        row = dict(batch=batch, seqlen=seqlen, ngroups=groups, bytes=one)
        confs = dict(fwd=best.get(("fwd", batch), (None,))[0], bwd=best.get(("bwd", batch), (None,))[0])
        for name in names:
            ctx = launch_configs(**confs) if name == "triton" else contextlib.nullcontext()
            with ctx:
                row[name] = time_backend(name, timer, sets)
        del sets
        results["table"].append(row)
        log(table_row(row, peak))


def step_times(cfg, H, P, N, device, names, timer, results, log):
    log("\n## decode step (one token), state fp32, bf16 activations; ms (median)")
    for batch in cfg["batches"]:
        st = make_inputs(batch, 1, H, P, N, 1, 1, torch.bfloat16, device, with_state=True)
        args_ = (
            st["initial_state"],
            st["x"][:, 0],
            st["dt"][:, 0],
            st["A"],
            st["B"][:, 0],
            st["C"][:, 0],
            st["D"],
            st["dt_bias"],
            True,
        )
        times = {
            name: timer(lambda name=name, args_=args_: ssd_step(*args_, backend=name))
            for name in ("torch_ref", *names[1:])
        }
        results["step"].append(dict(batch=batch, **times))
        log(f"  B={batch}: " + ", ".join(f"{k} {v:.4f}" for k, v in times.items()))


def fmt(ms):
    return "OOM" if ms is None else ms if isinstance(ms, str) else f"{ms:.3f}"


def table_row(row, peak) -> str:
    ch, tr = row["torch_chunked"], row["triton"]
    mb = row.get("mamba_ssm", {"fwd": "n/a", "fwd_bwd": "n/a"})  # "n/a": mamba-ssm not importable; None: OOM

    def ratio(a, b):
        return "n/a" if not isinstance(a, float) or not isinstance(b, float) else f"{a / b:.2f}x"

    def gbs(ms):
        if not isinstance(ms, float):
            return "n/a"
        rate = row["bytes"] / ms / 1e6
        return f"{rate:.0f} ({100 * rate / peak:.0f}%)"

    f, fb = "fwd", "fwd_bwd"
    return (
        f"| {row['batch']} | {row['seqlen']} | {row['ngroups']} | {fmt(ch[f])} | {fmt(tr[f])} | {fmt(mb[f])} | "
        f"{ratio(mb[f], tr[f])} | {gbs(tr[f])} | {gbs(mb[f])} | {fmt(ch[fb])} | {fmt(tr[fb])} | {fmt(mb[fb])} | "
        f"{ratio(mb[fb], tr[fb])} |"
    )


if __name__ == "__main__":
    main()
