#!/usr/bin/env python3
"""Builds small random-weight Hugging Face models, saves them with save_pretrained
(safetensors) under OUT/<case>/, and writes their outputs on fixed inputs to
OUT/reference.json for check.ts and check_export.py.

usage: python3 test/interop/make_models.py OUT_DIR

Weights are redrawn with a larger spread than HF's N(0, 0.02) initialisation, so that
every layer visibly changes the logits and a wrong mapping cannot hide under the
tolerance. The half-precision cases round the weights first and take the reference from
the rounded weights in float32, so they test the F16/BF16 readers, not the rounding.
"""
import json
import os
import sys

import torch
import transformers
from transformers import (BertConfig, BertForMaskedLM, BertForSequenceClassification, BertModel, GPT2Config,
                          GPT2LMHeadModel)

INPUT_IDS = [[2, 17, 45, 9, 88, 31, 5, 3], [2, 64, 12, 7, 3, 0, 0, 0]]
ATTENTION_MASK = [[1, 1, 1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 0, 0, 0]]
TOKEN_TYPE_IDS = [[0, 0, 0, 0, 1, 1, 1, 1], [0, 0, 1, 1, 1, 0, 0, 0]]
MLM_LABELS = [[-100, 17, -100, -100, 88, -100, -100, -100], [-100, -100, 12, -100, -100, -100, -100, -100]]


def bert_config(**kw):
    base = dict(vocab_size=101, hidden_size=48, num_hidden_layers=2, num_attention_heads=4, intermediate_size=96,
                max_position_embeddings=64, type_vocab_size=2, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    base.update(kw)
    return BertConfig(**base)


def spread(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g) * 0.1
            p.copy_(1 + noise if 'LayerNorm.weight' in name or name.endswith(('ln_1.weight', 'ln_2.weight', 'ln_f.weight')) else 2 * noise)
    return model.eval()


def round_to(model, dtype):
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.to(dtype).float())
    return model


def save(model, path, **kw):
    try:
        model.save_pretrained(path, safe_serialization=True, **kw)
    except TypeError:  # releases where safetensors is the only format take no such flag
        model.save_pretrained(path, **kw)


def flat(t):
    return {'shape': list(t.shape), 'values': t.detach().float().reshape(-1).tolist()}


def run(model, cls, inputs):
    ids = torch.tensor(inputs['input_ids'])
    kw = {}
    if 'attention_mask' in inputs:
        kw['attention_mask'] = torch.tensor(inputs['attention_mask'])
    if 'token_type_ids' in inputs:
        kw['token_type_ids'] = torch.tensor(inputs['token_type_ids'])
    if 'labels' in inputs:
        kw['labels'] = torch.tensor(inputs['labels'])
    with torch.no_grad():
        out = model(ids, **kw)
    if cls == 'BertModel':
        return {'last_hidden_state': flat(out.last_hidden_state), 'pooler_output': flat(out.pooler_output)}
    res = {'logits': flat(out.logits)}
    if getattr(out, 'loss', None) is not None:
        res['loss'] = flat(out.loss.reshape(1))
    return res


def main():
    if len(sys.argv) != 2:
        sys.exit('usage: make_models.py OUT_DIR')
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(0)
    bert_inputs = {'input_ids': INPUT_IDS, 'attention_mask': ATTENTION_MASK, 'token_type_ids': TOKEN_TYPE_IDS}
    gpt_cfg = GPT2Config(vocab_size=97, n_positions=32, n_embd=48, n_layer=2, n_head=4, resid_pdrop=0.0, embd_pdrop=0.0,
                         attn_pdrop=0.0, layer_norm_epsilon=1e-5)
    cls_cfg = bert_config(hidden_act='gelu_new', layer_norm_eps=1e-6, id2label={0: 'neg', 1: 'neu', 2: 'pos'},
                          label2id={'neg': 0, 'neu': 1, 'pos': 2})
    # name: (model, saved dtype, save_pretrained kwargs, inputs)
    cases = {
        'gpt2': (spread(GPT2LMHeadModel(gpt_cfg), 1), None, {}, {'input_ids': INPUT_IDS}),
        'gpt2_fp16': (round_to(spread(GPT2LMHeadModel(gpt_cfg), 2), torch.float16), torch.float16, {}, {'input_ids': INPUT_IDS}),
        'bert': (spread(BertModel(bert_config()), 3), None, {}, bert_inputs),
        'bert_sharded_bf16': (round_to(spread(BertModel(bert_config(hidden_act='relu')), 4), torch.bfloat16), torch.bfloat16,
                              {'max_shard_size': '40KB'}, bert_inputs),
        'bert_cls': (spread(BertForSequenceClassification(cls_cfg), 5), None, {}, {**bert_inputs, 'labels': [2, 0]}),
        'bert_mlm': (spread(BertForMaskedLM(bert_config()), 6), None, {}, {**bert_inputs, 'labels': MLM_LABELS}),
    }
    ref = {'torch': torch.__version__, 'transformers': transformers.__version__, 'cases': {}}
    for name, (model, dtype, save_kw, inputs) in cases.items():
        cls = type(model).__name__
        outputs = run(model, cls, inputs)  # float32, before any half-precision save
        saved = model.to(dtype) if dtype is not None else model
        save(saved, os.path.join(out, name), **save_kw)
        ref['cases'][name] = {'dir': name, 'class': cls, 'inputs': inputs, 'outputs': outputs}
        files = sorted(os.listdir(os.path.join(out, name)))
        print(f'{name}: {cls} saved ({", ".join(files)})')
    with open(os.path.join(out, 'reference.json'), 'w') as f:
        json.dump(ref, f)
    print(f'reference outputs: {os.path.join(out, "reference.json")} (torch {torch.__version__}, transformers {transformers.__version__})')


if __name__ == '__main__':
    main()
