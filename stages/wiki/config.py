"""Typed configs of the Wikipedia stages (light: imported by the stage specs)."""

from __future__ import annotations

import dataclasses

from stages.core.config import knob


@dataclasses.dataclass
class ExtractConfig:
    dump: str = knob("sample", "dump (MediaWiki XML or CirrusSearch JSON, plain/bz2/gzip; format detected "
                     "from content): a file, a directory of split dumps, a glob, or a `;` list; or `sample` "
                     "for the generated corpus. Read in parallel: a multistream .xml.bz2 with its index "
                     "(byte ranges of streams) and split files (one unit each). A single-stream "
                     ".bz2/.gz has one reader: its decompression is serial, so it is slower")
    dump_index: str = knob("", "multistream index of `dump` (default: the `...-multistream-index.txt.bz2` "
                           "beside it, found by name)", signature=False)
    read_unit_mb: float = knob(16.0, "compressed MB of multistream streams per unit of work (the output "
                               "does not depend on it)", signature=False, gt=0)
    sample_format: str = knob("xml", "format the generated sample is written in: one XML or CirrusSearch file, "
                              "a multistream .xml.bz2 with its index, or split multistream files",
                              choices=("xml", "cirrus", "multistream", "split"))
    sample_articles: int = knob(300, "articles in the generated sample", ge=10)
    sample_seed: int = knob(0, "seed of the generated sample")
    sample_fact_style: str = knob("whose", "how a generated article repeats a linked article's fact: whose "
                                  "(\", whose depth is 83 metres\") or restate (the linked article's sentence)",
                                  choices=("whose", "restate"))
    export_markdown: bool = knob(False, "also write a markdown/ tree of Title_<6hex>.md files")
    on_error: str = knob("skip", "bad input (truncated file, invalid JSON, malformed XML): "
                         "skip and count it, or fail with its location", choices=("skip", "fail"))
    shards: int = knob(2, "article shards (units of parallel work and of output)", ge=1)
    workers: int = knob(2, "parallel worker processes", signature=False, ge=1)

    def validate(self) -> None:
        if not self.dump:
            raise ValueError("dump: empty; pass a dump file path or `sample`")
        if self.dump != "sample":
            from stages.wiki.dumps import dump_files

            try:
                dump_files(self.dump)
            except FileNotFoundError as err:
                raise ValueError(str(err)) from None


@dataclasses.dataclass
class GraphConfig:
    percentiles: list[int] = knob([50, 90, 99], "degree percentiles reported in the stats", ge=0, le=100)
    workers: int = knob(2, "parallel worker processes per rank (the artifact does not depend on it)",
                        signature=False, ge=1)
    memory_mb: float = knob(256.0, "working memory per process for the link runs and their merge: sorting "
                          "spills to disk (under the partial directory) beyond it, so peak RSS is about "
                          "this plus the interpreter (~60 MB) and, on rank 0, 8 B per node for the "
                          "components, whatever the number of links (the artifact does not depend on it)",
                          signature=False, gt=0)


@dataclasses.dataclass
class PretokenizeConfig:
    encoding: str = knob("gpt2", "tiktoken encoding name (gpt2, r50k_base, cl100k_base, o200k_base, ...)")
    title_heading: bool = knob(True, "start each document with `# Title`")
    append_eot: bool = knob(False, "end each document with the encoding's end-of-text token "
                            "(off: packing inserts separators itself)")
    workers: int = knob(2, "parallel encoder threads (tiktoken releases the GIL)", signature=False, ge=1)

    def validate(self) -> None:
        import tiktoken

        known = tiktoken.list_encoding_names()
        if self.encoding not in known:
            raise ValueError(f"encoding: {self.encoding!r} is not a tiktoken encoding; choose one of {', '.join(known)}")
