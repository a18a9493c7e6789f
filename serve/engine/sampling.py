"""Per-request sampling for the transformers engine: penalties, temperature, top-p, seed, logprobs.

Follows vLLM's semantics so both engines answer alike: presence/frequency penalties count the
*generated* tokens only, logprobs are of the model's raw distribution (before temperature/top-p),
temperature 0 is greedy, and a seed makes a request reproducible whatever else is in its batch.
"""

from __future__ import annotations

import random

import torch

from serve.engine.base import SamplingSettings, TokenLogprob


class RowSampler:
    def __init__(self, sampling: SamplingSettings, vocab_size: int) -> None:
        self.s = sampling
        self.vocab_size = vocab_size
        seed = sampling.seed if sampling.seed is not None else random.randrange(2**63)
        # torch takes 64 bits; any integer a caller passes must seed, not overflow
        self.generator = torch.Generator().manual_seed(seed % 2**64)

    def sample(
        self, logits: torch.Tensor, generated: list[int], tokenizer
    ) -> tuple[int, TokenLogprob | None]:
        logits = logits[: self.vocab_size].float().cpu()
        raw = logits
        s = self.s
        if generated and (s.presence_penalty or s.frequency_penalty):
            counts = torch.bincount(torch.tensor(generated), minlength=logits.shape[0])[
                : logits.shape[0]
            ].float()
            logits = logits - s.frequency_penalty * counts - s.presence_penalty * (counts > 0).float()
        if s.greedy:
            token = int(torch.argmax(logits))
        else:
            probs = torch.softmax(logits / s.temperature, dim=-1)
            if s.top_p < 1.0:
                sorted_probs, order = torch.sort(probs, descending=True)
                # keep the smallest prefix whose mass reaches top_p (always at least one token)
                drop = sorted_probs.cumsum(-1) - sorted_probs > s.top_p
                sorted_probs[drop] = 0.0
                probs = torch.zeros_like(probs).scatter_(0, order, sorted_probs)
            token = int(torch.multinomial(probs, 1, generator=self.generator))
        return token, self._logprob(raw, token, tokenizer) if s.logprobs is not None else None

    def _logprob(self, raw: torch.Tensor, token: int, tokenizer) -> TokenLogprob:
        logp = torch.log_softmax(raw, dim=-1)
        top = []
        if self.s.logprobs:
            values, ids = torch.topk(logp, self.s.logprobs)
            top = [(tokenizer.decode([int(i)]), int(i), float(v)) for v, i in zip(values, ids, strict=True)]
        return TokenLogprob(tokenizer.decode([token]), token, float(logp[token]), top)
