"""pretokenize vs raw tiktoken `encode_ordinary_batch` on the same texts: tokens/s ratio.

    PYTHONPATH=. python benchmarks/bench_pretokenize.py [--dump PATH | --sample-articles N]
                                                        [--encoding gpt2 --processes 2 --repeats 3]

The texts are the extract artifact's articles exactly as pretokenize encodes them (title
heading, link targets cleaned). The baseline encodes them from memory with
`encode_ordinary_batch(num_threads=processes)` and keeps the token lists; the stage's
`run()` reads the zstd shards, encodes in `processes` worker threads, and writes the
uint16/uint32 shards, the index and their checksums. The same stage through the runner
(which adds the manifest, a `git` call and the atomic commit) is reported too. Both use the same
already-resolved encoding; runs alternate, best of `repeats` each (the machine is shared).
CPU seconds (all threads of the process) are reported too: on a loaded machine
they compare the work done more reliably than wall time.
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
from stages.core.tiktoken_offline import resolve_encoding
from stages.formats.articles import iter_articles
from stages.wiki.pretokenize import clean_link_targets, run
from stages.wiki.spec import EXTRACT, PRETOKENIZE

DEFAULT_DUMP = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "wiki" / "enwiki-2016-sample.xml.bz2"


def cpu_seconds() -> float:
    """User + system CPU of this process (all threads) and of its finished children."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dump", type=Path, default=DEFAULT_DUMP)
    parser.add_argument("--sample-articles", type=int, default=0, help="use a generated corpus of N articles")
    parser.add_argument("--encoding", default="gpt2")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        overrides = {"workers": args.processes}
        if args.sample_articles:
            overrides.update(dump="sample", sample_articles=args.sample_articles)
        elif args.dump.is_file():
            overrides["dump"] = str(args.dump)
        else:
            raise SystemExit(f"dump {args.dump} not found; pass --dump PATH or --sample-articles N")
        ex = execute(EXTRACT, config.resolve(EXTRACT.config_cls, overrides), root, {})
        extract = load_artifact(root, "extract", ex.signature)
        texts = [f"# {a.title}\n\n{clean_link_targets(a.text)}" for a in iter_articles(extract.path)]
        encoding = resolve_encoding(args.encoding, root / "cache")

        cfg = config.resolve(PRETOKENIZE.config_cls, {"encoding": args.encoding, "workers": args.processes})
        baseline_times, stage_times, runner_times, baseline_cpu, stage_cpu = [], [], [], [], []
        tokens = stage_tokens = 0
        for _ in range(args.repeats):  # alternate, so both see the same machine load
            cpu, start = cpu_seconds(), time.perf_counter()
            encoded = encoding.encode_ordinary_batch(texts, num_threads=args.processes)
            baseline_times.append(time.perf_counter() - start)
            baseline_cpu.append(cpu_seconds() - cpu)
            tokens = sum(len(t) for t in encoded)
            del encoded  # the stage's workers should not inherit the baseline's token lists
            out_dir = root / "pretokenize-run"
            shutil.rmtree(out_dir, ignore_errors=True)
            out_dir.mkdir()
            ctx = StageContext(stage="pretokenize", signature="bench", root=root, out_dir=out_dir,
                               upstream={"extract": extract})
            cpu, start = cpu_seconds(), time.perf_counter()
            stage_tokens = run(cfg, ctx)["tokens"]
            stage_times.append(time.perf_counter() - start)
            stage_cpu.append(cpu_seconds() - cpu)
            start = time.perf_counter()
            execute(PRETOKENIZE, cfg, root, {"extract": extract}, force=True)
            runner_times.append(time.perf_counter() - start)
    if stage_tokens != tokens:
        raise SystemExit(f"token counts differ: stage {stage_tokens} vs baseline {tokens}")
    base, ours = min(baseline_times), min(stage_times)
    print(json.dumps({
        "input": overrides.get("dump"), "documents": len(texts), "tokens": tokens, "encoding": args.encoding,
        "processes": args.processes,
        "baseline_encode_ordinary_batch": {"best_s": round(base, 3), "tokens_per_s": round(tokens / base),
                                           "times_s": [round(t, 3) for t in baseline_times]},
        "pretokenize_stage": {"best_s": round(ours, 3), "tokens_per_s": round(tokens / ours),
                              "times_s": [round(t, 3) for t in stage_times]},
        "ratio_tokens_per_s": round(base / ours, 3),
        "through_runner": {"best_s": round(min(runner_times), 3), "ratio_tokens_per_s": round(base / min(runner_times), 3)},
        # CPU seconds (this process and its reaped workers): insensitive to other load.
        "baseline_cpu_s_best": round(min(baseline_cpu), 3),
        "stage_cpu_s_best": round(min(stage_cpu), 3),
        "ratio_tokens_per_cpu_s": round(min(baseline_cpu) / min(stage_cpu), 3),
    }, indent=2))


if __name__ == "__main__":
    main()
