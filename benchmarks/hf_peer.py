r"""The Hugging Face peer of `python -m aigc_jax.benchmark` for the language models: transformers' GPT-2 and BERT
(PyTorch, CPU) at the shapes of configs/lm_gpt.py:runlocal and lm_bert.py:runlocal, same batch, same rows.

  /tmp/peer/bin/python benchmarks/hf_peer.py --model=gpt2 [--steps=10] [--threads=N]
  (venv: python3 -m venv /tmp/peer && /tmp/peer/bin/pip install -r benchmarks/requirements-peer.txt)

Shapes: vocab 4,096, 128 positions, width 256, 4 blocks, 4 heads, MLP 4×, GELU (tanh), tied output layer, no
dropout, as ours. Training: AdamW (lr 1e-3, weight decay 0.1, betas 0.9/0.95, gradient clipping at 1.0, as the
recipe), loss on all 32 × 128 tokens of random rows (BERT: 15% of positions masked, loss on those), median
step time after 2 warm-up steps. Generation (GPT-2): greedy with the KV cache, 8 rows, a 16-token prompt to
128 tokens (112 new, `min_new_tokens` forces the length). Threads: torch's default (all cores) unless given.
Prints one JSON line with the same keys as ours.
"""

import argparse
import json
import statistics
import time

import numpy as np
import torch
import transformers

VOCAB, LENGTH, WIDTH, DEPTH, HEADS, BATCH = 4096, 128, 256, 4, 4, 32


def build(kind: str):
  if kind == 'gpt2':
    cfg = transformers.GPT2Config(vocab_size=VOCAB, n_positions=LENGTH, n_embd=WIDTH, n_layer=DEPTH, n_head=HEADS,
                                  resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, activation_function='gelu_new',
                                  bos_token_id=1, eos_token_id=2)
    return transformers.GPT2LMHeadModel(cfg)
  cfg = transformers.BertConfig(vocab_size=VOCAB, max_position_embeddings=LENGTH, hidden_size=WIDTH,
                                num_hidden_layers=DEPTH, num_attention_heads=HEADS, intermediate_size=4 * WIDTH,
                                hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, hidden_act='gelu_new',
                                type_vocab_size=1)
  return transformers.BertForMaskedLM(cfg)


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument('--model', choices=('gpt2', 'bert'), default='gpt2')
  ap.add_argument('--steps', type=int, default=10)
  ap.add_argument('--threads', type=int, default=0)
  args = ap.parse_args()
  if args.threads:
    torch.set_num_threads(args.threads)
  torch.manual_seed(0)
  model = build(args.model)
  params = sum(p.numel() for p in model.parameters())
  rng = np.random.default_rng(0)
  tokens = torch.from_numpy(rng.integers(4, VOCAB, (BATCH, LENGTH)).astype(np.int64))
  if args.model == 'gpt2':
    labels = tokens
  else:
    masked = torch.from_numpy(rng.random((BATCH, LENGTH)) < 0.15)
    labels = torch.where(masked, tokens, torch.full_like(tokens, -100))
  opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.1, betas=(0.9, 0.95))
  model.train()
  times = []
  for i in range(2 + args.steps):
    t0 = time.perf_counter()
    loss = model(input_ids=tokens, labels=labels).loss
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    if i >= 2:
      times.append(time.perf_counter() - t0)
  step_s = statistics.median(times)
  out = {'peer': f'transformers {transformers.__version__} {args.model}, torch {torch.__version__}',
         'threads': torch.get_num_threads(), 'params': params, 'batch': BATCH, 'seq_len': LENGTH,
         'train_s_per_step': step_s, 'train_tokens_per_s': BATCH * LENGTH / step_s}
  if args.model == 'gpt2':
    model.eval()
    prompt, new = tokens[:8, :16], LENGTH - 16
    gen = lambda: model.generate(input_ids=prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=new,
                                 min_new_tokens=new, do_sample=False, use_cache=True, pad_token_id=0)
    with torch.inference_mode():
      gen()   # warm
      gen_times = []
      for _ in range(3):
        t0 = time.perf_counter()
        produced = gen()
        gen_times.append(time.perf_counter() - t0)
    assert produced.shape[1] == LENGTH, produced.shape
    out.update(gen_batch=8, gen_new_tokens=new, generate_s=statistics.median(gen_times),
               generate_tokens_per_s=8 * new / statistics.median(gen_times))
  print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in out.items()}))


if __name__ == '__main__':
  main()
