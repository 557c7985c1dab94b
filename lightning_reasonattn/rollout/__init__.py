"""Completions and their measurement, shared by RL training and the survey.

* ``prompts``: prompts (strings or chat messages) as a left-padded batch of token ids;
* ``sampling``: completions with ``generate``, greedy or keyed (the draws depend on keys, not on an RNG state);
* ``dense``: a dense copy of a 4-bit LoRA policy that decodes fast, kept in sync with it;
* ``logprobs``: log-probabilities and entropies of the completion tokens, with the rhythm captured in the same
  forward.
"""
