"""Cost of upstream verification next to the work of the stage that reads the artifact.

    PYTHONPATH=. python benchmarks/bench_verify.py [--sample-articles 3000 | --dump PATH] [--repeats 3]

Builds an extract artifact, then times, alternating and best of `repeats` (the machine is shared):

- `pretokenize` run(): the consuming stage's own work (baseline);
- cold verification of the extract artifact: sizes + sha256 of every file (no stamp);
- warm verification: sizes + stamp lookups (what every reader pays once the artifact is stamped,
  the first one included: the runner stamps what it hashed at commit; cold is what a reader pays
  for a copied or changed artifact);
- graph run() as a second consumer of the same artifact.

Reported as ratios verify / stage, in wall and in CPU seconds (CPU is steadier under load).
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import tempfile
import time
from pathlib import Path

from stages.core import config
from stages.core.artifacts import load_artifact
from stages.core.context import StageContext
from stages.core.runner import execute
from stages.core.verify import STAMP, verify_artifact
from stages.wiki.spec import EXTRACT, GRAPH, PRETOKENIZE


def cpu_seconds() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def timed(fn) -> tuple[float, float]:
    cpu, start = cpu_seconds(), time.perf_counter()
    fn()
    return time.perf_counter() - start, cpu_seconds() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sample-articles", type=int, default=3000)
    parser.add_argument("--dump", type=Path, default=None, help="a real dump instead of the generated sample")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        overrides = {"dump": str(args.dump)} if args.dump else {"dump": "sample", "sample_articles": args.sample_articles}
        ex = execute(EXTRACT, config.resolve(EXTRACT.config_cls, overrides), root, {})
        extract = load_artifact(root, "extract", ex.signature)
        nbytes = sum(f["bytes"] for f in extract.manifest["files"])
        runs: dict[str, list[tuple[float, float]]] = {"pretokenize": [], "graph": [], "cold": [], "warm": []}
        stages = {"pretokenize": (PRETOKENIZE, {"workers": 1}), "graph": (GRAPH, {})}

        for _ in range(args.repeats):
            for name, (spec, values) in stages.items():
                out_dir = root / f"{name}-run"
                shutil.rmtree(out_dir, ignore_errors=True)
                out_dir.mkdir()
                ctx = StageContext(stage=name, signature="bench", root=root, out_dir=out_dir,
                                   upstream={"extract": extract})
                cfg = config.resolve(spec.config_cls, values)
                runs[name].append(timed(lambda spec=spec, cfg=cfg, ctx=ctx: spec.load_run()(cfg, ctx)))
            (extract.path / STAMP).unlink(missing_ok=True)
            runs["cold"].append(timed(lambda: verify_artifact(extract)))
            runs["warm"].append(timed(lambda: verify_artifact(extract)))

    best = {name: (min(w for w, _ in rows), min(c for _, c in rows)) for name, rows in runs.items()}

    def ratio(kind: str, stage: str) -> dict:
        return {"wall": round(best[kind][0] / best[stage][0], 4), "cpu": round(best[kind][1] / max(best[stage][1], 1e-9), 4)}

    print(json.dumps({
        "input": overrides.get("dump"), "artifact_files": len(extract.manifest["files"]), "artifact_bytes": nbytes,
        "best_s": {name: {"wall": round(w, 4), "cpu": round(c, 4)} for name, (w, c) in best.items()},
        "verify_cold_vs_pretokenize": ratio("cold", "pretokenize"),
        "verify_warm_vs_pretokenize": ratio("warm", "pretokenize"),
        "verify_cold_vs_graph": ratio("cold", "graph"),
        "verify_warm_vs_graph": ratio("warm", "graph"),
        "hash_mb_per_s": round(nbytes / best["cold"][0] / 1e6, 1),
    }, indent=2))


if __name__ == "__main__":
    main()
