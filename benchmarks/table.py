"""The markdown tables of `results.json` (pasted into the README): timings as `validity` writes them."""
from __future__ import annotations

from . import validity
from .validity import text


def _pct(v) -> str:
    return "–" if v is None else f"{100 * v:.1f} %"


def markdown(results: dict) -> str:
    lines = [f"Machine: {results['machine']['cpus']} CPUs, {results['machine']['platform']}", ""]
    timed = [(part, render) for part, render in TIMED if part in results]
    if timed:
        lines += [validity.RULE_TEXT, ""]
    for part, render in timed:
        section = results[part]
        if "rules" not in section:  # written before the rules: its figures were never judged
            lines += [f"### {part}: recorded before the validity rules, so it is not tabled (`results.json` keeps "
                      f"the old figures); rerun `python -m benchmarks.run --part {part}`.", ""]
            continue
        lines += render(section)
        if section["rules"] != validity.RULES:
            lines += [f"(Judged by the rules of its time: {section['rules']}.)", ""]
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


def _opt(row: dict, key: str) -> str:
    return text(row[key]) if key in row else "–"


def _resolved(fig: dict) -> bool:
    return not fig["invalid"] and fig["resolved"]


def _step(s: dict) -> list[str]:
    peak = s["matmul_gflops"]
    lines = [f"### Step profile (training images/second, batch {s['batch_size']}, {s['steps']} batches, "
             f"{s['repeats']} interleaved rounds)", "",
             f"Machine peak (dense 2048² matmul, measured in every round; each model's shares are of the peak in its "
             f"own rounds), GFLOP/s: float32 {text(peak['float32'])}, bfloat16 {text(peak['bfloat16'])}.", "",
             "| model (preset, trainer's precision) | GFLOP / train image | bare step float32 | bare step, trainer's "
             "precision | full `train()` | full ÷ bare | notebook loop | ours ÷ notebook |",
             "|---|---|---|---|---|---|---|---|"]
    for r in s["models"]:
        lines.append(
            f"| `{r['model']}` ({r['preset']}, {r['precision']}) | {r['train_gflop_per_image']:.3f} "
            f"| {text(r['bare_float32_ips'])} | {text(r['bare_ips'])} | {text(r['full_ips'])} | {text(r['full_over_bare'])} "
            f"| {_opt(r, 'notebook_ips')} | {_opt(r, 'full_over_notebook')} |")
    for r in s["models"]:
        if "full_float32_ips" in r:
            lines += ["", f"`{r['model']}` in float32 throughout (the notebook's precision), img/s of full `train()`: "
                      f"{text(r['full_float32_ips'])}; ÷ the float32 bare step {text(r['full_float32_over_bare_float32'])}, "
                      f"÷ the notebook loop {text(r['full_float32_over_notebook'])}."]
        if "feed_over_model" in r:
            lines += ["", f"Where `{r['model']}`'s augmentation runs ({r['precision']}, no callbacks), img/s: inside the "
                      f"model {text(r['aug_in_model_ips'])}, in a parallel prefetched `tf.data` feed "
                      f"{text(r['aug_in_feed_ips'])}; feed ÷ model {text(r['feed_over_model'])}."]
    return lines + [""]


def _pipeline(p: dict) -> list[str]:
    return [f"### (a) Pipeline throughput (custom_aug, batch {p['batch_size']}, training images/second, "
            f"{p['repeats']} interleaved rounds)", "",
            "| | this project | notebook (ImageDataGenerator.flow_from_directory) | ours ÷ notebook |",
            "|---|---|---|---|",
            f"| data pipeline only | {text(p['ours_pipeline_ips'])} | {text(p['notebook_pipeline_ips'])} "
            f"| {text(p['pipeline_ratio'])} |",
            f"| end-to-end training | {text(p['ours_train_ips'])} | {text(p['notebook_train_ips'])} "
            f"| {text(p['train_ratio'])} |", ""]


def _overhead(o: dict) -> list[str]:
    run = o["run_overhead"]
    per_run = f", i.e. {o['run_overhead_s']:.1f} s per run for MLflow's end-of-run logging" if _resolved(run) else ""
    return ["### (d) MLflow tracking overhead (the trainer with `MlflowTracker` vs `NullTracker`)", "",
            f"`{o['model']}` ({o['precision']}), {o['images']} training images, {o['epochs']} epochs, {o['rounds']} A/B "
            f"rounds. Seconds per epoch, {o['repeats']} epochs per arm (first epochs left out): tracked "
            f"{text(o['tracked_epoch_s'], '{:.2f}')}, untracked {text(o['untracked_epoch_s'], '{:.2f}')}; tracked ÷ "
            f"untracked {text(o['overhead'])}. Whole runs (evaluation, figures, model logging included), seconds: "
            f"tracked {text(o['tracked_run_s'], '{:.1f}')}, untracked {text(o['untracked_run_s'], '{:.1f}')}; "
            f"tracked ÷ untracked {text(run)}{per_run}.", ""]


def _backends(b: dict) -> list[str]:
    names = {"tensorflow": "TensorFlow", "jax": "JAX"}
    simd = [f for f in b["cpu_flags"] if f.startswith(("avx2", "avx512", "amx"))]
    v = b["versions"]
    lines = [f"### TensorFlow vs JAX on this CPU (`{b['preset']}`'s training step: the trainer's model, optimizer "
             f"and XLA choice; batch {b['batch_size']}, {b['steps']} batches of real images per measurement, "
             f"{b['repeats']} interleaved rounds, one worker process per backend)", "",
             f"CPU: {b['cpu_model'] or 'unknown'}, {'native' if b['bf16_native'] else '**no native**'} bfloat16 "
             f"(SIMD flags: {', '.join(simd) or 'none'}). Keras {v['keras']}, TensorFlow {v['tensorflow']}, "
             f"JAX {v['jax']}.", "",
             "| arm | precision | XLA | img/s |", "|---|---|---|---|"]
    for name in b["order"]:
        a = b["arms"][name]
        xla = "yes" if a["jit_compile_used"] is True else "no"
        label = names[a["backend"]] + (" (jit_compile=false)" if a["jit_compile"] == "false" else "")
        lines.append(f"| {label} | {a['precision']} | {xla} | {text(a['ips'])} |")
    lines += ["", "| precision | TensorFlow ÷ JAX |", "|---|---|"]
    lines += [f"| {p} | {text(b['ratios'][p])} |" for p in ("float32", "mixed_bfloat16")]
    return lines + ["", f"JAX float32 with XLA ÷ without (`jit_compile=false`): "
                    f"{text(b['ratios']['jax_compiled_over_uncompiled'])}.", "",
                    f"Command: `{b['command']}`", ""]


TIMED = (("step", _step), ("backends", _backends), ("pipeline", _pipeline), ("overhead", _overhead))


def _compare(c: dict) -> list[str]:
    lines = [f"### The seed's four-model comparison (MLflow experiment `{c['experiment']}`)", "",
             "| recipe | initialisation | epochs | val acc | PublicTest acc | macro-F1 | flip-TTA | run |",
             "|---|---|---|---|---|---|---|---|"]
    for r in c["runs"]:
        f1 = "–" if r["test_macro_f1"] is None else f"{r['test_macro_f1']:.3f}"
        lines.append(f"| `{r['recipe']}` | {r['init']} | {r['epochs']} | {_pct(r['validation_accuracy'])} "
                     f"| {_pct(r['test_accuracy'])} | {f1} | {_pct(r['test_tta_flip_accuracy'])} | `{r['run_id'][:8]}` |")
    return lines + [""]
