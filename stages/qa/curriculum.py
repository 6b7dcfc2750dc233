"""The progressive-segment curriculum of the `qa` stage: its phases and their warm-ups.

Phase ``i`` trains with up to ``segments[i]`` segments per document, for its own number of
epochs, at its own segment length; each phase starts with its own warm-up epochs, as MemXLNet
does. With ``shared_reader``, phase 1 trains without memory as a `qa_reader` artifact shared by
every run that differs only in its memory keys and later phases.
"""

from __future__ import annotations

import dataclasses

from stages.core.config import WHEN_SET, knob


@dataclasses.dataclass
class CurriculumConfig:
    """The `qa` stage's `curriculum.*` keys."""

    segments: list[int] = knob([2, 4], "max segments per document in each phase", ge=1)
    epochs: int = knob(2, "epochs of each phase (see phase_epochs)", ge=1)
    phase_epochs: list[int] = knob([], "epochs of each phase in turn, one per `segments` entry, e.g. [12,6]; "
                                       "empty = `epochs` for every phase", ge=1)
    phase_seq_lengths: list[int] = knob([], "segment length of each phase in turn, e.g. [128,64]: a first phase "
                                            "that reads each whole document in one segment; the last entry must "
                                            "equal max_seq_length (what evaluation reads); empty = max_seq_length "
                                            "for every phase", ge=16)
    warmup_freeze_base_epochs: int = knob(0, "first epochs of each phase train only memory and QA head (base: 1; "
                                             "tiny: 0, a random-init backbone has nothing to protect)", ge=0)
    warmup_disable_global_softmax_epochs: int = knob(1, "first epochs of each phase use a per-segment span "
                                                        "softmax", ge=0)
    warmup_disable_any_positive_epochs: int = knob(1, "first epochs of each phase pick answers by best-score "
                                                      "extraction, then `extraction`", ge=0)
    shared_reader: bool = knob(False, "phase 1 trains a reader without memory tokens, kept once under "
                                      "{root}/qa_reader/ for every run that differs only in its memory keys and "
                                      "later phases; phase 2 adds this run's memory, so memory 0 and N continue "
                                      "from one reader per seed and their difference is memory alone")
    shared_reader_seed: int = knob(0, "with shared_reader: the seed of the reader every run continues (0 = the "
                                      "run's own seed); set, the run seeds vary only the later phases, as seeds "
                                      "vary only the fine-tuning of a pretrained model", signature=WHEN_SET)

    def validate(self) -> None:
        if not self.segments:
            raise ValueError("segments: empty; give at least one phase, e.g. [2,4]")
        for name in ("phase_epochs", "phase_seq_lengths"):
            if getattr(self, name) and len(getattr(self, name)) != len(self.segments):
                raise ValueError(f"{name}: {getattr(self, name)} needs one entry per phase (segments="
                                 f"{self.segments}); or leave it empty")
        if self.shared_reader and len(self.segments) < 2:
            raise ValueError(f"shared_reader: needs a reader phase and a later one; segments={self.segments} "
                             "has one phase (e.g. [1,2])")
        if self.shared_reader_seed and not self.shared_reader:
            raise ValueError("shared_reader_seed: only means something with shared_reader=true")

    @property
    def phases(self) -> int:
        return len(self.segments)

    def epochs_of(self, phase: int) -> int:
        """Epochs of phase ``phase`` (0-based)."""
        return self.phase_epochs[phase] if self.phase_epochs else self.epochs

    def seq_length_of(self, phase: int | None, default: int) -> int:
        """Segment length of phase ``phase`` (None: the last) before memory tokens; ``default`` without
        `phase_seq_lengths`."""
        return self.phase_seq_lengths[-1 if phase is None else phase] if self.phase_seq_lengths else default

    def reader(self) -> CurriculumConfig:
        """The shared reader's curriculum: phase 1 alone, at its length (recorded as the only phase)."""
        return dataclasses.replace(self, segments=self.segments[:1], epochs=self.epochs_of(0), phase_epochs=[],
                                   phase_seq_lengths=[], shared_reader=False, shared_reader_seed=0)

    def warmups(self, epoch: int, use_global_softmax: bool, extraction: str) -> dict[str, bool | str]:
        """What epoch ``epoch`` (0-based, within its phase) runs with, after the warm-ups."""
        any_positive = extraction == "any_positive" and epoch >= self.warmup_disable_any_positive_epochs
        return {
            "freeze_base": epoch < self.warmup_freeze_base_epochs,
            "global_softmax": use_global_softmax and epoch >= self.warmup_disable_global_softmax_epochs,
            "extraction": "any_positive" if any_positive else "best_score",
        }
