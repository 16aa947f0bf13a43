"""What every benchmark script does last: print its Markdown with the command that reruns
it, and write it (and the numbers, as JSON) into --out."""
import json
import sys
from pathlib import Path


def publish(lines, data, out, stem, argv=None):
    """Print ``lines`` and the command that reruns the script (its ``argv``, by default the
    command line's); with ``out``, write OUT/STEM.md and OUT/STEM.json."""
    argv = sys.argv[1:] if argv is None else argv
    command = " ".join(["python", f"benchmarks/{Path(sys.argv[0]).name}", *argv])
    text = "\n".join([*lines, "", f"Command: `{command}`"]) + "\n"
    print(text)
    if out:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        (out / f"{stem}.md").write_text(text)
        (out / f"{stem}.json").write_text(json.dumps(data, indent=2) + "\n")
