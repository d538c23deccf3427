#!/usr/bin/env python3
"""Loads nodegrad's exports (OUT/export/<case>, written by check.ts) back into
transformers and checks that loading reports no missing, unexpected or mismatched keys,
logs no warning, and that the outputs equal the reference outputs make_models.py wrote.

usage: python3 test/interop/check_export.py OUT_DIR
"""
import json
import logging
import os
import sys

import torch
import transformers

TOLERANCE = 1e-5  # the weights are copied exactly, so only summation order may differ


class Capture(logging.Handler):
    def __init__(self):
        super().__init__(level=logging.WARNING)
        self.records = []

    def emit(self, record):
        self.records.append(record.getMessage())


def run(model, cls, inputs):
    kw = {k: torch.tensor(inputs[k]) for k in ('attention_mask', 'token_type_ids', 'labels') if k in inputs}
    with torch.no_grad():
        out = model(torch.tensor(inputs['input_ids']), **kw)
    if cls == 'BertModel':
        return {'last_hidden_state': out.last_hidden_state, 'pooler_output': out.pooler_output}
    res = {'logits': out.logits}
    if getattr(out, 'loss', None) is not None:
        res['loss'] = out.loss.reshape(1)
    return res


def main():
    if len(sys.argv) != 2:
        sys.exit('usage: check_export.py OUT_DIR')
    out = sys.argv[1]
    with open(os.path.join(out, 'reference.json')) as f:
        ref = json.load(f)
    transformers.logging.set_verbosity_warning()
    capture = Capture()
    transformers.logging.get_logger().addHandler(capture)
    failures = 0
    for name, case in ref['cases'].items():
        cls = case['class']
        export_dir = os.path.join(out, 'export', case['dir'])
        capture.records.clear()
        try:
            model, info = getattr(transformers, cls).from_pretrained(export_dir, output_loading_info=True)
        except Exception as e:  # report every case, not just the first failure
            print(f'FAIL {name}: transformers could not load {export_dir}: {e}')
            failures += 1
            continue
        for kind in ('missing_keys', 'unexpected_keys', 'mismatched_keys', 'error_msgs'):
            if info.get(kind):
                print(f'FAIL {name}: {kind}: {info[kind]}')
                failures += 1
        for msg in capture.records:
            print(f'FAIL {name}: transformers warned: {msg}')
            failures += 1
        model.eval()
        got = run(model, cls, case['inputs'])
        for key, want in case['outputs'].items():
            g = got[key].detach().float().reshape(-1)
            w = torch.tensor(want['values'], dtype=torch.float32)
            if list(got[key].shape) != want['shape'] and g.numel() != w.numel():
                print(f'FAIL {name}.{key}: shape {list(got[key].shape)} vs reference {want["shape"]}')
                failures += 1
                continue
            d = (g - w).abs().max().item()
            ok = d <= TOLERANCE
            failures += 0 if ok else 1
            print(f'{"ok  " if ok else "FAIL"} {name}.{key} {want["shape"]}: transformers on nodegrad\'s export, max |diff| = {d:.2e}')
    print(f'check_export.py: {failures} failure(s)' if failures else 'check_export.py: every export loads cleanly and matches')
    sys.exit(1 if failures else 0)


if __name__ == '__main__':
    main()
