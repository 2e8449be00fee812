"""When a benchmark figure may be published: the rules, in one place, as pure functions.

A timing is the list of its interleaved repeats (one per round of arms, so that load from elsewhere
on the machine hits every arm alike). `summarize` keeps their median and range; the rules:
- a timing is INVALID when fewer than MIN_REPEATS repeats were kept, or when its relative spread,
  (max − min) / median, exceeds MAX_SPREAD: the machine changed speed while it was measured;
- a timing whose share of the machine's matmul peak exceeds MAX_PEAK_SHARE is INVALID (no training
  step outruns a dense matmul: the timing or the peak is wrong); where the peak itself is INVALID,
  the share is, and the timing keeps its own verdict;
- a ratio of two timings is INVALID when either timing is; else it is "not resolved" when the two
  arms' ranges [min, max] overlap, and otherwise the ratio of the medians with the interval
  [min A / max B, max A / min B].
`text` writes any of these figures: an INVALID one as "INVALID (reason)" in place of its number
(which stays in results.json), so that it cannot be copied as a result.
"""
from __future__ import annotations

import statistics

# A quiet hour on the 2-core machine: 10-15 % over 6 epochs (overhead part, 2026-11-30). A busy one
# (issue 20): the matmul peak 7x slower than quiet. 25 % lets the first through and stops the second.
MAX_SPREAD = 0.25
MIN_REPEATS = 3  # the fewest whose median ignores one outlier (a median of two is their mean)
MAX_PEAK_SHARE = 1.0
RULES = {"max_spread": MAX_SPREAD, "min_repeats": MIN_REPEATS, "max_peak_share": MAX_PEAK_SHARE}
RULE_TEXT = (f"Each timing: the median of its interleaved repeats and their spread, (max − min) ÷ median. "
             f"**INVALID** (the number withheld here, kept in `results.json`) with fewer than {MIN_REPEATS} repeats, "
             f"a spread above {100 * MAX_SPREAD:.0f} % or a share of the matmul peak above "
             f"{100 * MAX_PEAK_SHARE:.0f} %; a ratio of an INVALID timing is INVALID. A ratio is **not resolved** "
             f"when its two arms' min–max ranges overlap; else it is the ratio of the medians, with the interval "
             f"min A ÷ max B – max A ÷ min B.")


def _pct(v: float) -> str:
    return f"{100 * v:.0f} %"


def summarize(samples) -> dict:
    """A timing's repeats (in any unit), their median, min, max and relative spread, and its verdict:
    `invalid` is the reason, or None."""
    xs = [float(s) for s in samples]
    median = statistics.median(xs)
    spread = (max(xs) - min(xs)) / median
    invalid = (f"{len(xs)} repeat{'s' * (len(xs) != 1)}, {MIN_REPEATS} needed" if len(xs) < MIN_REPEATS
               else f"spread {_pct(spread)} > {_pct(MAX_SPREAD)}" if spread > MAX_SPREAD else None)
    return {"samples": xs, "median": median, "min": min(xs), "max": max(xs), "spread": spread, "invalid": invalid}


def share_of_peak(ips: dict, flop_per_image: float, peak_gflops: dict) -> dict:
    """The images/second timing `ips` with its median's share of the peak's median (both summaries)."""
    share = ips["median"] * flop_per_image / 1e9 / peak_gflops["median"]
    out = {**ips, "peak_share": share, "peak_share_invalid": peak_gflops["invalid"] and f"peak: {peak_gflops['invalid']}"}
    if share > MAX_PEAK_SHARE:
        out["invalid"] = out["peak_share_invalid"] = ips["invalid"] or f"{_pct(share)} of peak > {_pct(MAX_PEAK_SHARE)}"
    return out


def ab(a, b, names: tuple[str, str] = ("A", "B")) -> dict:
    """A ÷ B for two timings (summaries or lists of repeats), by the rules above; `names` label the
    arms in the reason."""
    a, b = (x if isinstance(x, dict) else summarize(x) for x in (a, b))
    bad = next((f"{name}: {x['invalid']}" for name, x in zip(names, (a, b)) if x["invalid"]), None)
    return {"ratio": a["median"] / b["median"], "lo": a["min"] / b["max"], "hi": a["max"] / b["min"],
            "resolved": a["min"] > b["max"] or b["min"] > a["max"], "invalid": bad}


def text(fig: dict, fmt: str = "{:.0f}") -> str:
    """A figure from `summarize`, `share_of_peak` or `ab` as tables and the console write it (`fmt`: a
    timing's median)."""
    if fig["invalid"]:
        return f"**INVALID** ({fig['invalid']})"
    if "ratio" in fig:
        interval = f"{fig['lo']:.2f}–{fig['hi']:.2f}×"
        return f"**{fig['ratio']:.2f}×** ({interval})" if fig["resolved"] else f"not resolved (ranges overlap: {interval})"
    out = f"{fmt.format(fig['median'])} (spread {_pct(fig['spread'])})"
    if "peak_share" in fig:
        share = fig["peak_share_invalid"]
        out += f", share of peak **INVALID** ({share})" if share else f", {100 * fig['peak_share']:.1f} % of peak"
    return out
