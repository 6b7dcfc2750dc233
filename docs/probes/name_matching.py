"""Probe (diagnostics d41-d43): can the tiny MemXLNet reader learn to match a name?

The smallest form of what `study=qa_binding`'s reader must learn: a context states one or more
attributes of two people ("<attr> of <name> is <value>"), the question names an attribute and one
of the people, and the answer starts at that person's value. Trained on the start position only
(cross-entropy), the tiny model as the qa stage builds it, memory off. Scored every 250 steps on
256 freshly drawn examples; stops once that accuracy reaches 95%. With `--pool N` every training
batch is drawn from N fixed examples (the regime of a small training set seen for many epochs).

    python docs/probes/name_matching.py --steps 8000 --attributes 3 --pool 1000
"""

import argparse
import random
import time

import torch

from models.memxlnet import MemoryConfig, MemXLNetForQA

VOCAB, NAMES, VALUES = 700, range(100, 400), range(400, 700)
SEP, CLS, FILLER = 3, 4, range(40, 90)


def draw(rng: random.Random, n: int, attributes: int, filler: int):
    """n examples: token ids, token types (context 0, question 1, CLS 2) and the answer's start."""
    ids, types, starts = [], [], []
    for _ in range(n):
        names = rng.sample(NAMES, 2)
        values = rng.sample(VALUES, 2 * attributes)
        context, start = [], {}
        for i, name in enumerate(names):
            for a in range(attributes):
                context += [10, 30 + a, name, 12]
                start[name, a] = len(context)
                context += [values[i * attributes + a], 13]
        context += [rng.choice(FILLER) for _ in range(filler)]
        name, a = rng.choice(names), rng.randrange(attributes)
        question = [20, 30 + a, name, 21]
        ids.append(context + [SEP] + question + [SEP, CLS])
        types.append([0] * (len(context) + 1) + [1] * (len(question) + 1) + [2])
        starts.append(start[name, a])
    return torch.tensor(ids), torch.tensor(types), torch.tensor(starts)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=8000)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--init-std", type=float, default=0.02)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--d-model", type=int, default=64)
    p.add_argument("--attributes", type=int, default=1, help="attributes stated per person")
    p.add_argument("--filler", type=int, default=0, help="random context tokens after the people")
    p.add_argument("--pool", type=int, default=0, help="train on N fixed examples (0: a fresh batch each step)")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    d = args.d_model
    model = MemXLNetForQA.tiny(VOCAB, MemoryConfig(num_tokens=0), n_layer=args.layers, d_model=d, n_head=d // 16,
                               d_inner=2 * d, initializer_range=args.init_std)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr)
    pool = draw(rng, args.pool, args.attributes, args.filler) if args.pool else None
    held_out = draw(random.Random(args.seed + 10_000), 256, args.attributes, args.filler)
    started = time.time()
    for step in range(args.steps + 1):
        if pool is None:
            ids, types, starts = draw(rng, args.batch, args.attributes, args.filler)
        else:
            pick = torch.randint(0, args.pool, (args.batch,))
            ids, types, starts = (t[pick] for t in pool)
        loss = torch.nn.functional.cross_entropy(model(ids, torch.ones_like(ids), types).start_logits, starts)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 250 == 0:
            with torch.no_grad():
                ids, types, starts = held_out
                accuracy = (model(ids, torch.ones_like(ids), types).start_logits.argmax(-1) == starts).float().mean()
            print(f"step {step} train loss {loss.item():.3f} held-out accuracy {accuracy:.2f} "
                  f"({time.time() - started:.0f} s)", flush=True)
            if accuracy >= 0.95:
                print(f"learned at step {step}")
                return
    print(f"not learned in {args.steps} steps")


if __name__ == "__main__":
    main()
