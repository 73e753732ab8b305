"""Prints the cases where two conformance runs differ, with AWS's documented answer.

usage: compare.py keyplane.jsonl moto.jsonl
"""

import json
import sys


def load(path):
    out = {}
    try:
        with open(path) as f:
            for line in f:
                r = json.loads(line)
                out[r["case"]] = r
    except FileNotFoundError:
        pass
    return out


def show(v):
    return "—" if v is None else (v if isinstance(v, str) else json.dumps(v))


def main():
    kp, moto = load(sys.argv[1]), load(sys.argv[2])
    cases = sorted(set(kp) | set(moto))
    rows = []
    for c in cases:
        a, b = kp.get(c), moto.get(c)
        expected = (a or b)["expected"]
        ko = a["observed"] if a else None
        mo = b["observed"] if b else "(not reached)"
        if ko != mo:
            rows.append((c, show(expected), show(ko), show(mo)))
    kp_ok = sum(1 for r in kp.values() if r["observed"] == r["expected"])
    moto_ok = sum(1 for r in moto.values() if r["observed"] == r["expected"])
    print(f"\ncases: {len(cases)}; matching AWS: keyplane {kp_ok}/{len(kp)}, moto {moto_ok}/{len(moto)}")
    if not rows:
        print("keyplane and moto agree on every case")
        return
    headers = ("case", "AWS documented answer", "keyplane", "moto")
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    line = " | ".join(h.ljust(w) for h, w in zip(headers, widths))
    print(f"\ncases where moto and keyplane's KMS differ ({len(rows)}):\n")
    print(line)
    print("-+-".join("-" * w for w in widths))
    for r in rows:
        print(" | ".join(v.ljust(w) for v, w in zip(r, widths)))


if __name__ == "__main__":
    main()
