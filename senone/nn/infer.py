"""Run a trained network over whole utterances (no chunking at test time).

Training cuts utterances into 15-frame chunks only to make back-propagation through time cheap;
at test time a recurrent network runs over each whole utterance from a zero state, so every frame
gets all of its past. Utterances are extended by the label delay (the last frame repeated d times)
and, for FFNNs, by their splicing context; the first d outputs are dropped again (see
:mod:`senone.nn.chunks`).

Several utterances share one forward pass: they are sorted by length and padded at the end to the
longest in the batch. That is exact, not approximate: the models are causal (a recurrent output at
t depends on inputs up to t) or local (an FFNN output depends on its ±c window), so frames added
after an utterance's end cannot change any of its outputs.
"""

from __future__ import annotations

from typing import Iterable, Iterator

import numpy as np
import torch

from senone.nn.chunks import pad_edges


@torch.no_grad()
def log_posteriors(model: torch.nn.Module, utterances: Iterable[tuple[str, np.ndarray]], label_delay: int, *,
                   batch_frames: int = 20000, device: str | torch.device = "cpu") -> Iterator[tuple[str, np.ndarray]]:
    """Yield ``(utt, log p(senone | frame))`` (T × num_pdfs, float32) for each utterance, in input order.

    ``batch_frames`` bounds the padded frames per forward pass (batch size × the longest extended
    utterance in it: that is what memory holds), except that an utterance longer than the bound runs
    alone. Input order is kept within and across batches so callers can stream results.
    """
    torch.set_flush_denormal(True)  # subnormals slow the CPU by 4x and carry no information (see senone.nn.train)
    model.eval()
    left, right = int(getattr(model, "left_context", 0)), int(getattr(model, "right_context", 0))
    pending: list[tuple[str, np.ndarray]] = []
    longest = 0  # the longest extended utterance pending: every row of the batch is padded to it

    def flush() -> Iterator[tuple[str, np.ndarray]]:
        order = sorted(range(len(pending)), key=lambda i: -len(pending[i][1]))
        ext = [pad_edges(np.asarray(pending[i][1], dtype=np.float32), left, label_delay + right) for i in order]
        longest = len(ext[0])
        x = np.stack([pad_edges(e, 0, longest - len(e)) for e in ext])
        out = torch.log_softmax(model(torch.from_numpy(x).to(device)), dim=-1).cpu().numpy()
        results: dict[int, np.ndarray] = {}
        for row, i in enumerate(order):
            n = len(pending[i][1])
            results[i] = np.ascontiguousarray(out[row, label_delay:label_delay + n])
        for i in range(len(pending)):
            yield pending[i][0], results[i]

    for utt, feats in utterances:
        n = len(feats) + label_delay + left + right
        if pending and max(longest, n) * (len(pending) + 1) > batch_frames:
            yield from flush()
            pending, longest = [], 0
        pending.append((utt, feats))
        longest = max(longest, n)
    if pending:
        yield from flush()
