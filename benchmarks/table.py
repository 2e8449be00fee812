"""The markdown tables of `results.json`."""
from __future__ import annotations


def _pct(v) -> str:
    return "–" if v is None else f"{100 * v:.1f} %"


def markdown(results: dict) -> str:
    lines = [f"Machine: {results['machine']['cpus']} CPUs, {results['machine']['platform']}", ""]
    if "step" in results:
        lines += _step(results["step"])
    if "backends" in results:
        lines += _backends(results["backends"])
    if "pipeline" in results:
        p = results["pipeline"]
        lines += ["### (a) Pipeline throughput (custom_aug, batch 64, training images/second)", "",
                  "| | this project | notebook (ImageDataGenerator.flow_from_directory) | ratio |",
                  "|---|---|---|---|",
                  f"| data pipeline only | {p['ours_pipeline_ips']:.0f} | {p['notebook_pipeline_ips']:.0f} "
                  f"| **{p['pipeline_ratio']:.1f}×** |",
                  f"| end-to-end training | {p['ours_train_ips']:.0f} | {p['notebook_train_ips']:.0f} "
                  f"| **{p['train_ratio']:.2f}×** |", ""]
    if "overhead" in results and "run_overhead_s" in results["overhead"]:
        o = results["overhead"]
        lines += ["### (d) MLflow tracking overhead (the trainer with `MlflowTracker` vs `NullTracker`)", "",
                  f"`{o['model']}` ({o['precision']}), {o['images']} training images, {o['epochs']} epochs, "
                  f"{o['rounds']} A/B rounds: median epoch {o['tracked_epoch_s']:.2f} s tracked vs "
                  f"{o['untracked_epoch_s']:.2f} s untracked over {o['repeats']} epochs each (first epochs left out): "
                  + (f"**{100 * o['overhead']:+.1f} %**. " if o["overhead"] >= 0 else
                     "**not resolved** — tracked came out faster, so the per-epoch difference is below this "
                     "machine's noise (a negative overhead is noise, not a figure). ")
                  + f"Whole runs (evaluation, figures, model logging included): "
                  f"{o['tracked_run_s']:.1f} s vs {o['untracked_run_s']:.1f} s, i.e. "
                  f"{o['run_overhead_s']:.1f} s per run for MLflow's end-of-run logging.", ""]
    if "compare" in results:
        lines += _compare(results["compare"])
    rows = results.get("accuracy", [])
    if rows:
        lines += ["### (c) Accuracy on PublicTest (3,589 images; selection on validation carved from train)", "",
                  "| recipe | precision | epochs | minutes | img/s | val acc | test acc | test macro-F1 | flip-TTA "
                  "| ten-crop TTA "
                  "| first ≥ 65 % (plain / TTA) | run |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in rows:
            first = " / ".join("–" if r.get(k) is None else f"{r[k]:.1f} min" for k in ("minutes_to_65", "minutes_to_65_tta"))
            ips = r.get("train_images_per_second")
            lines.append(f"| `{r['recipe']}` | {r.get('precision', '–')} | {r['epochs']} | {r['minutes']:.1f} | {ips or '–'} "
                     f"| {_pct(r['validation_accuracy'])} "
                         f"| {_pct(r['test_accuracy'])} | {r['test_macro_f1']:.3f} | {_pct(r['test_tta_flip_accuracy'])} "
                         f"| {_pct(r['test_tta_tencrop_accuracy'])} "
                         f"| {first} "
                         f"| `{r['run_id'][:8]}` |")
        lines.append("")
        for key, what in (("minutes_to_65", "plain"), ("minutes_to_65_tta", "with the recipe's TTA")):
            hits = [r for r in rows if r.get(key) is not None]
            if hits:
                best = min(hits, key=lambda r: r[key])
                lines += [f"(b) Time to human level, {what}: `{best['recipe']}` first reached 65 % on PublicTest "
                          f"after **{best[key]:.1f} minutes** of wall-clock time (epoch "
                          f"{next(p['epoch'] for p in best['test_trace'] if p['minutes'] == best[key])}).", ""]
            else:
                lines += [f"(b) Time to human level, {what}: no recipe reached 65 %.", ""]
        lines += ["Commands:", ""] + [f"- `{r['recipe']}`: `{r['command']}`" for r in rows] + [""]
    return "\n".join(lines)


def _step(s: dict) -> list[str]:
    peak = s["matmul_gflops"]
    lines = [f"### Step profile (training images/second, batch {s['batch_size']}, {s['steps']} batches, "
             f"median of {s['repeats']} interleaved)", "",
             f"Machine peak (dense 2048² matmul): **{peak['float32']:.0f} GFLOP/s float32, "
             f"{peak['bfloat16']:.0f} GFLOP/s bfloat16**.", "",
             "| model (preset) | GFLOP / train image | bare step float32 | bare step, trainer's precision "
             "| full `train()` | full ÷ bare | notebook loop | ours ÷ notebook |",
             "|---|---|---|---|---|---|---|---|"]
    for r in s["models"]:
        nb = "–" if r.get("notebook_ips") is None else f"{r['notebook_ips']:.0f}"
        vs_nb = "–" if r.get("full_over_notebook") is None else f"**{r['full_over_notebook']:.2f}×**"
        lines.append(
            f"| `{r['model']}` ({r['preset']}) | {r['train_gflop_per_image']:.3f} "
            f"| {r['bare_float32_ips']:.0f} ({_pct(r['bare_float32_peak_share'])} of peak) "
            f"| {r['bare_ips']:.0f} {r['precision']} ({_pct(r['bare_peak_share'])}) "
            f"| {r['full_ips']:.0f} ({_pct(r['full_peak_share'])}) | **{r['full_over_bare']:.2f}×** "
            f"| {nb} | {vs_nb} |")
    for r in s["models"]:
        if "full_float32_ips" in r:
            lines += ["", f"`{r['model']}` in float32 throughout (the notebook's precision): full `train()` "
                      f"{r['full_float32_ips']:.0f} img/s = **{r['full_float32_over_bare_float32']:.2f}×** the float32 bare "
                      f"step and **{r['full_float32_over_notebook']:.2f}×** the notebook loop."]
        if "feed_over_model" in r:
            lines += ["", f"Where `{r['model']}`'s augmentation runs ({r['precision']}, no callbacks): inside the model "
                      f"{r['aug_in_model_ips']:.0f} img/s, in a parallel prefetched `tf.data` feed {r['aug_in_feed_ips']:.0f} "
                      f"img/s (**{r['feed_over_model']:.2f}×**)."]
    return lines + [""]


def _span(values) -> str:
    return f"{min(values):.2f}–{max(values):.2f}"


def _resolved(per_round) -> str:
    """A ratio is resolved when every round's pair points the same way; else it is within this machine's noise."""
    above = sum(r > 1 for r in per_round)
    if above in (0, len(per_round)):
        return ""
    return f" (not resolved: {min(above, len(per_round) - above)} of {len(per_round)} rounds the other way)"


def _backends(b: dict) -> list[str]:
    names = {"tensorflow": "TensorFlow", "jax": "JAX"}
    simd = [f for f in b["cpu_flags"] if f.startswith(("avx2", "avx512", "amx"))]
    v = b["versions"]
    lines = [f"### TensorFlow vs JAX on this CPU (`{b['preset']}`'s training step: the trainer's model, optimizer "
             f"and XLA choice; batch {b['batch_size']}, {b['steps']} batches of real images per measurement, median of "
             f"{b['repeats']} interleaved rounds, one worker process per backend)", "",
             f"CPU: {b['cpu_model'] or 'unknown'}, {'native' if b['bf16_native'] else '**no native**'} bfloat16 "
             f"(SIMD flags: {', '.join(simd) or 'none'}). Keras {v['keras']}, TensorFlow {v['tensorflow']}, "
             f"JAX {v['jax']}.", "",
             "| arm | precision | XLA | img/s median | rounds (min–max) |", "|---|---|---|---|---|"]
    for name in b["order"]:
        a = b["arms"][name]
        xla = "yes" if a["jit_compile_used"] is True else "no"
        label = names[a["backend"]] + (" (jit_compile=false)" if a["jit_compile"] == "false" else "")
        lines.append(f"| {label} | {a['precision']} | {xla} | **{a['median_ips']:.0f}** "
                     f"| {min(a['rounds_ips']):.0f}–{max(a['rounds_ips']):.0f} |")
    lines += ["", "| precision | TensorFlow ÷ JAX (of the medians) | per round |", "|---|---|---|"]
    for p in ("float32", "mixed_bfloat16"):
        r = b["ratios"][p]
        lines.append(f"| {p} | **{r['tf_over_jax']:.2f}×**{_resolved(r['per_round'])} | {_span(r['per_round'])} |")
    j = b["ratios"]["jax_compiled_over_uncompiled"]
    return lines + ["", f"JAX float32 with XLA ÷ without (`jit_compile=false`): **{j['ratio']:.2f}×**"
                    f"{_resolved(j['per_round'])} (per round {_span(j['per_round'])}).", "",
                    f"Command: `{b['command']}`", ""]


def _compare(c: dict) -> list[str]:
    lines = [f"### The seed's four-model comparison (MLflow experiment `{c['experiment']}`)", "",
             "| recipe | initialisation | epochs | val acc | PublicTest acc | macro-F1 | flip-TTA | run |",
             "|---|---|---|---|---|---|---|---|"]
    for r in c["runs"]:
        f1 = "–" if r["test_macro_f1"] is None else f"{r['test_macro_f1']:.3f}"
        lines.append(f"| `{r['recipe']}` | {r['init']} | {r['epochs']} | {_pct(r['validation_accuracy'])} "
                     f"| {_pct(r['test_accuracy'])} | {f1} | {_pct(r['test_tta_flip_accuracy'])} | `{r['run_id'][:8]}` |")
    return lines + [""]
