"""Generated long documents for QA that separate what memory can and cannot help with.

Every document is one context, several segments long, in three parts:

1. **Subjects** (start of the document): a few people, each with a home town, a trade and a
   patron guild, e.g. "The patron guild of Varnok is the Belor Guild."
2. **Neighbours** (the middle): other people stated in the same forms, with their own guilds.
   They are distractors, and the padding that keeps part 1 and part 3 in different segments.
   Their guilds are registered too (``neighbour_guilds='registered'``: a cross-segment answer
   needs the subject's name bound to its guild) or never registered (``'unregistered'``: memory
   must carry which registered guild the document named before the register).
3. **Guild register** (the end): founding years of several guilds in random order, e.g.
   "The Belor Guild was founded in 1432. The Ostel Guild was founded in 1501."

Questions carry a ``kind`` (kept apart in the scores):

- ``local``: the answer and the words that identify it are in one sentence ("What is the home
  town of Varnok?", "When was the Ostel Guild founded?"). Every person (subject or neighbour) is
  asked about, and every registered guild: a reader that answers by position ("the first home
  town") instead of matching the name in the question to the name in the text fails most of
  them. Asking only about the first person named once let such a reader score local F1 ~70.
- ``cross_segment``: "When was the patron guild of Varnok founded?" The answer is in the
  register, which never names Varnok; only the start of the document says which guild is meant.
  The register lists several guilds (those of the subjects, unrelated ones, and with
  ``neighbour_guilds='registered'`` the neighbours'), in random order, so a reader that sees only
  the register can do no better than a guess.
- ``unanswerable``: the same question forms about a person or guild the document never mentions,
  or an attribute it does not state.

With ``distractor=True`` (the ``qa`` key ``sample_distractor``; one subject and at least one
neighbour), the first neighbour's patron guild is a registered guild other than the subject's, and
both patron-guild sentences come right after the subject's home town and trade, in random order,
before the neighbours' other facts: the start of the document then names two registered guilds, so
which year is asked for depends on whose guild it is. A reader that takes "the guild named before
the register" scores about 50 on the cross-segment question (either guild, 1 in 2), as does "the
first guild named"; one that guesses a register year scores about 25.

The ``split`` names its seed stream: 'train', 'dev' and 'test' documents are drawn from disjoint
streams (``Random("qa-sample|<seed>|<split>")``), so a test split is never seen by training or by
the choices made on dev.

Each question also carries a ``form`` (``home_town``, ``trade``, ``patron_guild``, ``guild_year``,
``patron_guild_year``, and four unanswerable forms), scored apart too, so that a kind's score
cannot hide one form at zero: local F1 ~70 once hid a register lookup ("When was the ... Guild
founded?") at chance.

Names and values are drawn uniformly, so no answer can be learned by heart. Owned by the `qa`
stage (``dataset=sample``); it does not depend on the wiki sample corpus.
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import re
import sys
from pathlib import Path

from stages.core.artifacts import write_json_atomic
from stages.core.config import knob
from stages.qa.data import KIND_CROSS, KIND_LOCAL, KIND_NONE

_SYLLABLES = ("var", "nok", "bel", "or", "os", "tel", "kar", "ith", "mel", "dun", "ra", "sa", "lo", "vin",
              "tor", "ga", "bre", "kul", "fen", "dra", "mi", "ros", "tal", "ek")
_GUILDS = ("Belor", "Ostel", "Kavin", "Dremor", "Falun", "Grisel", "Hanor", "Ithmar", "Jorvel", "Lunak",
           "Morvan", "Pellas", "Quoran", "Ristel", "Sabor", "Tamin")
_TRADES = ("baker", "smith", "weaver", "mason", "potter", "tanner", "miller", "carter", "brewer", "fisher",
           "cooper", "dyer")
_TOWN_ENDINGS = ("mar", "ford", "holm", "wick", "dale", "stead")
_ATTRIBUTES = ("home town", "trade", "patron guild")
_MISSING_ATTRIBUTES = ("birth year", "eldest child", "favourite song")
NEIGHBOUR_GUILDS = ("registered", "unregistered")
SPLITS = ("train", "dev", "test")


def _name(rng: random.Random) -> str:
    return "".join(rng.sample(_SYLLABLES, 2)).capitalize()


def _town(rng: random.Random) -> str:
    return rng.choice(_SYLLABLES).capitalize() + rng.choice(_SYLLABLES) + rng.choice(_TOWN_ENDINGS)


def _person_sentences(name: str, facts: dict[str, str]) -> list[tuple[str, str, str]]:
    """(sentence, attribute, answer) per fact; the answer text occurs once, at the sentence's end."""
    out = []
    for attribute in _ATTRIBUTES:
        value = facts[attribute]
        shown = f"the {value} Guild" if attribute == "patron guild" else value
        answer = f"{value} Guild" if attribute == "patron guild" else value
        out.append((f"The {attribute} of {name} is {shown}.", attribute, answer))
    return out


def _document(rng: random.Random, doc_id: str, n_subjects: int, n_neighbours: int, n_register: int,
              neighbour_guilds: str, distractor: bool = False) -> dict:
    towns = [_town(rng) for _ in range(n_subjects + n_neighbours)]
    names: list[str] = []
    while len(names) < n_subjects + n_neighbours + 2:
        # No name inside another name or a town ("Orsa" in "Torsa"): a segment that names no
        # subject must not contain one by accident.
        name = _name(rng)
        if not any(name.lower() in w.lower() or w.lower() in name.lower() for w in names + towns + list(_GUILDS)):
            names.append(name)
    subjects, neighbours, absent = names[:n_subjects], names[n_subjects:-2], names[-2:]
    outside = n_neighbours if neighbour_guilds == "unregistered" else 0
    guilds = rng.sample(_GUILDS, n_register + 1 + outside)
    registered, unregistered, neighbours_own = guilds[:n_register], guilds[n_register], guilds[n_register + 1:]
    people = {}
    # Subjects' guilds are in the register (so their cross-segment questions have an answer).
    # Neighbours' guilds are either drawn from the register too (distractors there: memory must bind
    # each name to its guild) or are guilds of their own that the register never lists (memory must
    # carry which registered guild was named earlier).
    for i, name in enumerate(subjects + neighbours):
        if i < n_subjects:
            guild = registered[i]
        elif distractor and i == n_subjects:  # the distractor: registered, and not the subject's
            guild = rng.choice(registered[n_subjects:])
        else:
            guild = neighbours_own[i - n_subjects] if outside else rng.choice(registered)
        people[name] = {"home town": towns[i], "trade": rng.choice(_TRADES), "patron guild": guild}
    founded = {g: str(rng.randint(1100, 1899)) for g in registered}

    context, qas = "", []

    def add(sentence: str) -> int:
        nonlocal context
        context = f"{context} {sentence}" if context else sentence
        return len(context) - len(sentence)

    def question(kind: str, form: str, text: str, answer: str | None, at: int | None) -> None:
        answers = [] if answer is None else [{"text": answer, "answer_start": at}]
        qas.append({"id": f"{doc_id}|{len(qas)}", "question": text, "answers": answers,
                    "is_impossible": answer is None, "kind": kind, "form": form})

    def state(name: str, sentence: str, attribute: str, answer: str) -> None:
        start = add(sentence)
        question(KIND_LOCAL, attribute.replace(" ", "_"), f"What is the {attribute} of {name}?", answer,
                 start + sentence.rindex(answer))

    if distractor:
        # subject: home town, trade; the two patron guilds (subject's, distractor's) in random order;
        # then the neighbours' other facts (the padding before the register).
        facts = {name: _person_sentences(name, people[name]) for name in subjects + neighbours}
        guild_sentences = [(subjects[0], facts[subjects[0]][2]), (neighbours[0], facts[neighbours[0]][2])]
        rng.shuffle(guild_sentences)
        for sentence in facts[subjects[0]][:2]:
            state(subjects[0], *sentence)
        for name, sentence in guild_sentences:
            state(name, *sentence)
        context += "\n\n"
        for name in neighbours:
            for sentence in facts[name] if name != neighbours[0] else facts[name][:2]:
                state(name, *sentence)
    else:
        for part in (subjects, neighbours):
            for name in part:
                for sentence in _person_sentences(name, people[name]):
                    state(name, *sentence)
            if part is subjects:
                context += "\n\n"
    context += "\n\n"
    order = registered[:]
    rng.shuffle(order)
    year_at = {}
    for guild in order:
        sentence = f"The {guild} Guild was founded in {founded[guild]}."
        year_at[guild] = add(sentence) + sentence.rindex(founded[guild])
    for name in subjects:
        guild = people[name]["patron guild"]
        question(KIND_CROSS, "patron_guild_year", f"When was the patron guild of {name} founded?", founded[guild],
                 year_at[guild])
    for guild in registered:
        question(KIND_LOCAL, "guild_year", f"When was the {guild} Guild founded?", founded[guild], year_at[guild])
    # Unanswerable: a person the document never names, a guild it does not register, an attribute
    # it never states (two of these per document, drawn).
    unanswerable = [
        ("absent_person_guild_year", f"When was the patron guild of {absent[0]} founded?"),
        ("unregistered_guild_year", f"When was the {unregistered} Guild founded?"),
        ("absent_person", f"What is the {rng.choice(_ATTRIBUTES)} of {absent[1]}?"),
        ("unstated_attribute", f"What is the {rng.choice(_MISSING_ATTRIBUTES)} of {rng.choice(subjects)}?"),
    ]
    for form, text in rng.sample(unanswerable, 2):
        question(KIND_NONE, form, text, None, None)
    return {"title": doc_id, "paragraphs": [{"context": context, "qas": qas}]}


def generate_sample(n_documents: int, seed: int, split: str, n_subjects: int = 1, n_neighbours: int = 2,
                    n_register: int = 4, neighbour_guilds: str = "registered", distractor: bool = False) -> dict:
    """A SQuAD-v2-format split of generated long documents (``split`` 'train', 'dev' or 'test': each
    draws from its own seed stream).

    neighbour_guilds: 'registered' (the neighbours' patron guilds are in the register) or
    'unregistered' (guilds of their own, never in the register).
    distractor: the first neighbour's registered guild is named next to the subject's, before the
    register (one subject, at least one neighbour, neighbour_guilds='registered').
    """
    if split not in SPLITS:
        raise ValueError(f"split: {split!r}; use one of {', '.join(SPLITS)}")
    if neighbour_guilds not in NEIGHBOUR_GUILDS:
        raise ValueError(f"neighbour_guilds: {neighbour_guilds!r}; use one of {', '.join(NEIGHBOUR_GUILDS)}")
    if n_subjects + n_neighbours > n_register + 4 or n_subjects > n_register:
        raise ValueError("sample: more subjects than registered guilds; raise n_register")
    if distractor and (n_subjects != 1 or n_neighbours < 1 or neighbour_guilds != "registered"):
        raise ValueError("sample distractor: needs one subject, at least one neighbour and "
                         "neighbour_guilds='registered'")
    rng = random.Random(f"qa-sample|{seed}|{split}")
    data = [_document(rng, f"{split}-{i:05d}", n_subjects, n_neighbours, n_register, neighbour_guilds, distractor)
            for i in range(n_documents)]
    return {"version": "v2.0", "data": data}


def register_of(context: str) -> dict[str, str]:
    """{guild: founding year} of a generated document's register ("The Belor Guild was founded in 1432.")."""
    return dict(re.findall(r"The (\w+) Guild was founded in (\d{4})\.", context))


def patron_guild_of(context: str, name: str) -> str | None:
    """The patron guild a generated document gives ``name`` (None: it gives none)."""
    found = re.search(rf"The patron guild of {re.escape(name)} is the (\w+) Guild\.", context)
    return found.group(1) if found else None


def asked_person(question: str) -> str | None:
    """X of a cross-segment question "When was the patron guild of X founded?" (None: another form)."""
    found = re.fullmatch(r"When was the patron guild of (\w+) founded\?", question.strip())
    return found.group(1) if found else None


def keep_kinds(sample: dict, kinds: set[str], from_document: int = 0) -> dict:
    """``sample`` with only the questions of ``kinds`` in documents ``from_document`` and later
    (earlier documents keep every question); documents left without a question are dropped."""
    data = []
    for i, document in enumerate(sample["data"]):
        paragraphs = []
        for paragraph in document["paragraphs"]:
            qas = paragraph["qas"] if i < from_document else [q for q in paragraph["qas"] if q["kind"] in kinds]
            if qas:
                paragraphs.append({**paragraph, "qas": qas})
        if paragraphs:
            data.append({**document, "paragraphs": paragraphs})
    return {**sample, "data": data}


@dataclasses.dataclass
class SampleConfig:
    """The generated long documents of `data.dataset=sample`: the `qa` stage's `sample.*` keys."""

    documents: int = knob(200, "training documents generated", ge=1)
    dev_documents: int = knob(30, "dev documents generated", ge=1)
    seed: int = knob(0, "seed of the generated documents (each split draws from its own seed stream)")
    neighbours: int = knob(2, "people stated between the subject and the register (the padding that keeps "
                              "them in different segments; fewer = shorter documents)", ge=0)
    neighbour_guilds: str = knob("registered", "the neighbours' patron guilds are 'registered' (memory must bind "
                                 "the subject's name to its guild) or 'unregistered' (memory must carry which "
                                 "registered guild was named before the register)", choices=NEIGHBOUR_GUILDS)
    distractor: bool = knob(False, "the first neighbour's patron guild is a registered guild other than the "
                                   "subject's, named next to it (random order) before the cut, so the year asked "
                                   "for depends on whose guild it is")
    cross_only_documents: int = knob(0, "further training documents of which only the cross-segment question is "
                                        "kept (a denser cross-segment signal)", ge=0)

    def validate(self) -> None:
        if self.distractor and (self.neighbours < 1 or self.neighbour_guilds != "registered"):
            raise ValueError("distractor: needs sample.neighbours >= 1 and sample.neighbour_guilds=registered")

    def generate(self, split: str, documents: int) -> dict:
        """``documents`` generated documents of ``split`` (training adds the cross-only documents)."""
        extra = self.cross_only_documents if split == "train" else 0
        generated = generate_sample(documents + extra, self.seed, split, n_neighbours=self.neighbours,
                                    neighbour_guilds=self.neighbour_guilds, distractor=self.distractor)
        return keep_kinds(generated, {KIND_CROSS}, documents)


def main(argv: list[str] | None = None) -> int:
    """Write a generated split as a SQuAD v2 file (``data.dataset=<file>`` then trains on it)."""
    kinds = (KIND_LOCAL, KIND_CROSS, KIND_NONE)
    parser = argparse.ArgumentParser(prog="python -m stages.qa.sample", description=main.__doc__)
    parser.add_argument("out", type=Path, help="SQuAD v2 JSON file to write")
    parser.add_argument("--documents", type=int, default=200, help="documents to generate (default 200)")
    parser.add_argument("--split", choices=SPLITS, default="train")
    parser.add_argument("--data-seed", type=int, default=0, help="as the qa key sample.seed (default 0)")
    parser.add_argument("--neighbour-guilds", choices=NEIGHBOUR_GUILDS, default="registered",
                        help="as the qa key sample.neighbour_guilds (default registered)")
    parser.add_argument("--neighbours", type=int, default=2,
                        help="as the qa key sample.neighbours (default 2)")
    parser.add_argument("--distractor", action="store_true",
                        help="as the qa key sample.distractor: the neighbour's registered guild is named next to "
                             "the subject's, before the register")
    parser.add_argument("--kinds", default=",".join(kinds),
                        help=f"comma-separated question kinds to keep (default all: {','.join(kinds)})")
    parser.add_argument("--all-kinds-documents", type=int, default=0,
                        help="the first N documents keep every question (default 0); the documents of "
                             "data.dataset=sample with sample.documents=N are exactly these")
    args = parser.parse_args(argv)
    keep = set(args.kinds.split(","))
    if not keep or keep - set(kinds):
        parser.error(f"--kinds: {args.kinds!r}; use a comma-separated subset of {','.join(kinds)}")
    sample = keep_kinds(generate_sample(args.documents, args.data_seed, args.split, n_neighbours=args.neighbours,
                                        neighbour_guilds=args.neighbour_guilds, distractor=args.distractor), keep, args.all_kinds_documents)
    write_json_atomic(args.out, sample)
    n = sum(len(p["qas"]) for d in sample["data"] for p in d["paragraphs"])
    print(f"{args.out}: {len(sample['data'])} documents, {n} questions")
    return 0


if __name__ == "__main__":
    sys.exit(main())
