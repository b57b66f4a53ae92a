"""Benchmark of the SSD scan backends on Mamba-2 shapes of an 8B layer and of the students' layers, side by side.

    PYTHONPATH=src:.third_party/mamba_ssm_stub python experiments/kernels/bench.py --out DIR

One run does, in order (writing results under DIR as it goes, so a run cut short keeps what it measured):
  1. the HBM copy peak (a large device-to-device copy, bytes read + written);
  2. correctness: own kernels vs torch_ref (small shape, fp32 and bf16, values and all gradients), own kernels
     and mamba-ssm vs torch_chunked (fp32 math) at a benchmark shape, the decode step vs the reference;
  3. a sweep of the own kernels' launch configurations at seq 8K (sequential and chunk-parallel);
  4. the table: forward and forward+backward time of torch_chunked, own triton (sequential kernels),
     own triton_chunked (chunk-parallel kernels), own sequential forward + chunk-parallel backward, own segmented
     forward (+ chunk-parallel backward), and mamba-ssm's
     mamba_chunk_scan_combined (Triton), with ratios and effective GB/s (fewest bytes / time) vs the peak, on the
     8B Mamba-2 layer and on the students' layers (heads = query heads, B per KV-head group, C per head);
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
import hybrid_distill.kernels.ssd_chunked as ssd_chunked
from hybrid_distill.kernels import ssd_chunk_scan
from hybrid_distill.ops import BACKENDS, ssd_scan, ssd_step
from hybrid_distill.ops.ssd_chunked import ssd_scan_chunked
from hybrid_distill.ops.ssd_ref import ssd_scan_ref, ssd_step_ref

# d_model 4096, expand 2 -> d_inner 8192 = 128 heads x 64; d_state 128
FULL = dict(nheads=128, headdim=64, dstate=128, seqlens=(2048, 4096, 8192, 16384), batches=(1, 8), groups=(1, 8))
DRY = dict(nheads=4, headdim=16, dstate=16, seqlens=(64, 130), batches=(1, 2), groups=(1, 2))
# the students' Mamba layers: (heads, head dim, d_state, B groups, C groups) = (query heads, head dim, head dim,
# KV heads, query heads) of the teacher; timed at the target lengths (the last two of `seqlens`) and both batches.
# mamba-ssm takes one group count for B and C: its adapter repeats B to C's (ops/mamba_ssm_backend.py)
STUDENTS = {
    "llama3-8b": (32, 128, 128, 8, 32),
    "llama3.2-1b": (32, 64, 64, 8, 32),
    "smollm2-135m": (9, 64, 64, 3, 9),
}
DRY_STUDENTS = {"student-dry": (4, 16, 16, 2, 4)}
BACKEND_NAMES = ("torch_chunked", "triton", "triton_chunked", "mamba_ssm")
# own-kernel mixes called through kernels.ssd_chunk_scan: name -> (fwd, bwd)
TRITON_SEQ_FWD_CHUNKED_BWD = "triton_seq_fwd_chunked_bwd"  # a column of fwd+bwd only (its fwd is triton's)
TRITON_SEGMENTED = "triton_segmented"
MIXES = {TRITON_SEQ_FWD_CHUNKED_BWD: ("sequential", "chunked"), TRITON_SEGMENTED: ("segmented", "chunked")}


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
    if name in MIXES:
        fwd, bwd = MIXES[name]
        return lambda **kw: ssd_chunk_scan(**kw, fwd=fwd, bwd=bwd)
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
def launch_configs(fwd=None, bwd=None, chunked=None):
    """Rebind the own kernels' module-default launch configurations for the duration of a block."""
    saved = ssd.FWD_CONFIG, ssd.BWD_CONFIG, ssd.BWD_CONFIG_MANY, ssd_chunked.CHUNKED_CONFIG
    if fwd is not None:
        ssd.FWD_CONFIG = fwd
    if bwd is not None:
        ssd.BWD_CONFIG = ssd.BWD_CONFIG_MANY = bwd  # the given one whatever the number of programs
    if chunked is not None:
        ssd_chunked.CHUNKED_CONFIG = chunked
    try:
        yield
    finally:
        ssd.FWD_CONFIG, ssd.BWD_CONFIG, ssd.BWD_CONFIG_MANY, ssd_chunked.CHUNKED_CONFIG = saved


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


def bench_inputs(batch, seqlen, nheads, headdim, dstate, gb, gc, device, seed=0):
    """(inputs with gradients on, dy) for timing forward+backward."""
    inputs = make_inputs(batch, seqlen, nheads, headdim, dstate, gb, gc, torch.bfloat16, device, seed=seed)
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


def triton_outputs(inputs, dy, backend="triton"):
    """y and the gradients of the own kernels under the current launch configurations."""
    y = ssd_scan(**inputs, dt_softplus=True, backend=backend)
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
        inputs, dy = bench_inputs(1, 8192 if not args.dry_run else 130, H, P, N, 1, 1, device)
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
        students = DRY_STUDENTS if args.dry_run else STUDENTS
        table(cfg, H, P, N, device, names, best, timer, peak, start, args.budget_s, results, log, students)

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
    """Launch configurations of the own kernels at seq 8K, each checked against its kernels' default's outputs.

    Kinds: "fwd" and "bwd" rebind the sequential kernels' configurations (backend triton), "chunked" the
    chunk-parallel kernels' one (backend triton_chunked, both passes; the best by forward+backward time).
    """
    log("\n## own-kernel launch configurations, seq 8K, ngroups 1, bf16")
    sweep_len = 8192 if not dry_run else 130
    best = {}
    spaces = {
        "fwd": [ssd.LaunchConfig(*c) for c in ((32, 64, 4, 2), (64, 64, 4, 2), (64, 64, 8, 2), (32, 64, 4, 3))],
        "bwd": [ssd.LaunchConfig(*c) for c in ((32, 64, 8, 2), (32, 64, 4, 2), (16, 64, 4, 2))],
        # (chunk, block_p, warps, stages, block_n)
        "chunked": [
            ssd.LaunchConfig(*c)
            for c in (
                (32, 64, 4, 2, 64),
                (32, 64, 4, 3, 64),
                (64, 64, 4, 2, 64),
                (64, 32, 4, 2, 32),
                (128, 64, 8, 2, 64),
            )
        ],
    }
    if dry_run:
        spaces = {kind: space[:2] for kind, space in spaces.items()}
    for batch in cfg["batches"]:
        inputs, dy = bench_inputs(batch, sweep_len, H, P, N, 1, 1, device)
        for kind, space in spaces.items():
            backend = "triton_chunked" if kind == "chunked" else "triton"
            y_default, grads_default = triton_outputs(inputs, dy, backend)  # each family against its own default
            modes = {"fwd": ("fwd",), "bwd": ("fwd_bwd",), "chunked": ("fwd", "fwd_bwd")}[kind]
            for conf in space:
                try:
                    with launch_configs(**{kind: conf}):
                        y, grads = triton_outputs(inputs, dy, backend)
                        err = max(rel_err(y, y_default), *(rel_err(a, b) for a, b in zip(grads, grads_default)))
                        times = time_backend(backend, timer, [(inputs, dy)], modes=modes)
                except Exception as e:  # a configuration that does not compile (e.g. too much shared memory)
                    log(f"  {kind} B={batch} {conf}: failed: {type(e).__name__}: {str(e)[:120]}")
                    continue
                ms = times[modes[-1]]
                ok = err < 1e-2 and ms is not None
                results["sweep"].append(
                    dict(kind=kind, batch=batch, config=dataclasses.asdict(conf), ms=times, err=err)
                )
                log(
                    f"  {kind} B={batch} chunk={conf.chunk} block_p={conf.block_p} block_n={conf.block_n} "
                    f"warps={conf.num_warps} stages={conf.num_stages}: "
                    + ", ".join(f"{m} {fmt(t)} ms" for m, t in times.items())
                    + ("" if ok else f"  WRONG (rel err {err:.1e})")
                )
                if ok and (best.get((kind, batch)) is None or ms < best[(kind, batch)][1]):
                    best[(kind, batch)] = (conf, ms)
        del inputs
        log(f"  best B={batch}: " + ", ".join(f"{kind} {best.get((kind, batch))}" for kind in spaces))
    return best


def table_rows(cfg, H, P, N, students):
    """(layer name, (H, P, N, Gb, Gc), batch, seqlen) of every table row: the 8B Mamba-2 layer at every length
    and group count, then each student's layer at the target lengths; the 8K rows first (the main target)."""
    mamba2 = [(f"mamba2-8b g{g}", (H, P, N, g, g)) for g in cfg["groups"]]
    rows = [(*mamba2[0], b, L) for L in cfg["seqlens"] for b in cfg["batches"]]
    rows += [(*layer, b, cfg["seqlens"][-2]) for layer in mamba2[1:] for b in cfg["batches"]]
    rows.sort(key=lambda r: (r[3] != cfg["seqlens"][-2], r[3], r[2], r[0]))
    rows += [
        (name, shape, b, L) for name, shape in students.items() for L in cfg["seqlens"][-2:] for b in cfg["batches"]
    ]
    return rows


def table(cfg, H, P, N, device, names, best, timer, peak, start, budget_s, results, log, students):
    log("\n## forward and forward+backward, bf16, dt_softplus, D, dt_bias; ms (median)")
    log(
        f"layers: mamba2-8b = H={H} P={P} N={N}; "
        + "; ".join(f"{k} = H, P, N, Gb, Gc {v}" for k, v in students.items())
    )
    header = table_header(names)
    log(header)
    log("|" + "---|" * (header.count("|") - 1))
    timed = [*names, *MIXES]
    for layer, (nheads, headdim, dstate, gb, gc), batch, seqlen in table_rows(cfg, H, P, N, students):
        if time.time() - start > budget_s:
            log(f"(time budget reached: rows from {layer} B={batch} L={seqlen} on not measured)")
            break
        one = fwd_bytes(batch, seqlen, nheads, headdim, dstate, gb, gc)
        nsets = max(1, min(4, -(-256 * 2**20 // one)))  # >= 256 MiB of inputs in rotation: more than the L2
        sets = [bench_inputs(batch, seqlen, nheads, headdim, dstate, gb, gc, device, seed=i) for i in range(nsets)]
        row = dict(layer=layer, batch=batch, seqlen=seqlen, groups=f"{gb}/{gc}", bytes=one)
        confs = {kind: best.get((kind, batch), (None,))[0] for kind in ("fwd", "bwd", "chunked")}
        for name in timed:
            modes = ("fwd_bwd",) if name == TRITON_SEQ_FWD_CHUNKED_BWD else ("fwd", "fwd_bwd")
            with launch_configs(**confs):
                row[name] = time_backend(name, timer, sets, modes=modes)
        del sets
        results["table"].append(row)
        log(table_row(row, peak, names))


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


# the own variants compared with mamba-ssm, per mode
OWN_FWD = ("triton", "triton_chunked", TRITON_SEGMENTED)
OWN_FWD_BWD = ("triton", "triton_chunked", TRITON_SEQ_FWD_CHUNKED_BWD, TRITON_SEGMENTED)
SHORT = {
    "torch_chunked": "torch_chunked",
    "triton": "triton",
    "triton_chunked": "triton_chunked",
    "mamba_ssm": "mamba",
    TRITON_SEQ_FWD_CHUNKED_BWD: "triton fwd + chunked bwd",
    TRITON_SEGMENTED: "segmented",  # forward: the segmented one; forward+backward: with the chunk-parallel backward
}


def table_header(names) -> str:
    cols = ["layer", "batch", "seq", "Gb/Gc"]
    cols += [f"{SHORT[n]} fwd" for n in (*names, TRITON_SEGMENTED)]
    cols += [f"mamba/{SHORT[n]} fwd" for n in OWN_FWD]
    cols += [f"{SHORT[n]} GB/s (% peak)" for n in (*OWN_FWD, "mamba_ssm")]
    cols += [f"{SHORT[n]} fwd+bwd" for n in (*names, *MIXES)]
    cols += [f"mamba/{SHORT[n]} fwd+bwd" for n in OWN_FWD_BWD]
    return "| " + " | ".join(cols) + " |"


def table_row(row, peak, names) -> str:
    na = {"fwd": "n/a", "fwd_bwd": "n/a"}  # "n/a": mamba-ssm not importable; None: out of memory

    def get(name, mode):
        return row.get(name, na).get(mode, "n/a")

    def ratio(a, b):
        return "n/a" if not isinstance(a, float) or not isinstance(b, float) else f"{a / b:.2f}x"

    def gbs(ms):
        if not isinstance(ms, float):
            return "n/a"
        rate = row["bytes"] / ms / 1e6
        return f"{rate:.0f} ({100 * rate / peak:.0f}%)"

    f, fb = "fwd", "fwd_bwd"
    cells = [row["layer"], row["batch"], row["seqlen"], row["groups"]]
    cells += [fmt(get(n, f)) for n in (*names, TRITON_SEGMENTED)]
    cells += [ratio(get("mamba_ssm", f), get(n, f)) for n in OWN_FWD]
    cells += [gbs(get(n, f)) for n in (*OWN_FWD, "mamba_ssm")]
    cells += [fmt(get(n, fb)) for n in (*names, *MIXES)]
    cells += [ratio(get("mamba_ssm", fb), get(n, fb)) for n in OWN_FWD_BWD]
    return "| " + " | ".join(map(str, cells)) + " |"


if __name__ == "__main__":
    main()
