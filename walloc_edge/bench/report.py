"""The bench's result as a text table (the terminal), Markdown (a results page) and an SVG
bar chart of the throughputs."""
import numpy as np

__all__ = ["print_table", "markdown", "svg_plot"]


def _cells(row, unit):
    e, d = row.get("encode"), row.get("decode")
    fmt = lambda v, f: "" if v is None else f.format(v)
    coders = row.get("coders", {})
    return [row["row"], row["status"][:60], fmt(row.get("file_MB"), "{:.2f}"),
            "" if not e else f"{e['median']:.1f} ({e['min']:.1f}-{e['max']:.1f})",
            "" if not e else f"{e['p50_ms']:.0f}/{e['p90_ms']:.0f}",
            "/".join(f"{coders[c]:.1f}" for c in ("rans", "webp", "png")) if coders else "",
            fmt(row.get("end_to_end"), "{:.1f}"), fmt(row.get("jpeg_share"), "{:.3f}×"),
            fmt(row.get("webp_share"), "{:.3f}×"),
            fmt(row.get("peak_MB"), "{:.0f}"),
            "" if not d else f"{d['median']:.2f}",
            fmt(row.get("compression_ratio"), "{:.1f}"), fmt(row.get("psnr"), "{:.2f}")]


def _headers(unit):
    return ["row", "status", "file MB", f"encode {unit}/s (min-max)", "p50/p90 ms",
            f"rans/webp/png {unit}/s", f"end-to-end {unit}/s", "÷ JPEG, equal cores",
            "÷ WebP, equal cores",
            "peak MB", f"decode {unit}/s",
            "ratio", "PSNR dB"]


def _machine_line(m):
    versions = ", ".join(f"{k} {v}" for k, v in m["versions"].items() if v)
    return (f"{m['cpu']} ({m['architecture']}, {m['cores']} cores, ISA {' '.join(m['isa']) or '?'}"
            f"; GPU {m['gpu'] or 'none'}); {versions}")


def print_table(result):
    """The machine line, the input, and one aligned line per row."""
    unit = result["unit"]
    table = [_headers(unit)] + [_cells(r, unit) for r in result["rows"]]
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    print(_machine_line(result["machine"]))
    print(f"input {'x'.join(map(str, result['input']['shape']))}, median of {result['repeat']}"
          f", rans level {result.get('level', 'best')}")
    for row in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)))


def markdown(result, command):
    """The table as Markdown, with the machine, the input and the ``command`` that reran it."""
    unit = result["unit"]
    lines = [f"Machine: {_machine_line(result['machine'])}", "",
             f"Input: {'x'.join(map(str, result['input']['shape']))} "
             f"{result['input']['dtype']}; median of {result['repeat']} timed runs after a "
             f"warm-up; rans level {result.get('level', 'best')}", "",
             "| " + " | ".join(_headers(unit)) + " |", "|" + "---|" * len(_headers(unit))]
    lines += ["| " + " | ".join(_cells(r, unit)) + " |" for r in result["rows"]]
    lines += ["", f"Command: `{command}`"]
    return "\n".join(lines) + "\n"


def svg_plot(result):
    """A horizontal bar chart of encode (and decode) throughput per row, log scale."""
    bars = []
    for r in result["rows"]:
        for key, what in (("encode", "encode"), ("decode", "decode")):
            if r.get(key):
                bars.append((f"{r['row']} — {what}", r[key]["median"], r["kind"]))
    if not bars:
        return "<svg xmlns='http://www.w3.org/2000/svg'/>"
    top = max(v for _, v, _ in bars)
    lo = min(v for _, v, _ in bars) / 2
    scale = lambda v: 420 * np.log(v / lo) / np.log(top / lo)
    colours = {"sensor": "#2b6cb0", "coder": "#38a169", "decoder": "#805ad5",
               "baseline": "#a0aec0"}
    height = 30 + 22 * len(bars)
    out = [f"<svg xmlns='http://www.w3.org/2000/svg' width='900' height='{height}' "
           "font-family='sans-serif' font-size='12'>",
           f"<text x='10' y='18' font-weight='bold'>{result['unit']}/s (log scale) — "
           f"{_machine_line(result['machine'])[:110]}</text>"]
    for i, (label, value, kind) in enumerate(bars):
        y = 30 + 22 * i
        out.append(f"<text x='10' y='{y + 14}'>{label[:52]}</text>")
        out.append(f"<rect x='370' y='{y + 2}' width='{max(scale(value), 1):.1f}' height='16' "
                   f"fill='{colours[kind]}'/>")
        out.append(f"<text x='{375 + scale(value):.1f}' y='{y + 14}'>{value:.2f}</text>")
    out.append("</svg>")
    return "\n".join(out) + "\n"
