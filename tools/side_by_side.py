#!/usr/bin/env python3
"""herd and llama.cpp side by side on one model file, in alternating rounds.

A shared machine's memory bandwidth moves from minute to minute (decode reads at whatever the
memory gives), so a herd run followed minutes later by a llama-bench run compares two minutes as
much as two engines. This script runs `herd bench` and `llama-bench` with the same arguments in
turns, `--rounds` times, the order swapped every round, and reports for each test (pp N / tg N at
each thread count) every round's ratio and the median of the rounds.

    tools/side_by_side.py --llama-bench PATH/llama-bench MODEL.gguf -p 512 -n 128 -t 2 -r 2

Arguments after the model are handed to both tools unchanged (`-p`, `-n`, `-t`, `-r`, `-d` mean
the same in both). Needs only the Python standard library; herd from `target/release/herd`
unless `--herd` says otherwise.
"""

import argparse
import json
import statistics
import subprocess
import sys
import time


def run_json(cmd):
    """Runs a benchmark command with JSON output; its rows, keyed by (test, threads)."""
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    rows = {}
    for r in json.loads(out):
        n_prompt, n_gen = int(r["n_prompt"]), int(r["n_gen"])
        test = f"pp{n_prompt}" if n_gen == 0 else f"tg{n_gen}"
        if n_prompt and n_gen:
            test = f"pp{n_prompt}+tg{n_gen}"
        depth = int(r.get("n_depth", 0) or 0)
        if depth:
            test += f" @ d{depth}"
        rows[(test, int(r["n_threads"]))] = float(r["avg_ts"])
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--herd", default="target/release/herd", help="herd binary")
    ap.add_argument("--llama-bench", required=True, help="llama-bench binary")
    ap.add_argument("--rounds", type=int, default=3, help="rounds of both (default 3)")
    ap.add_argument("model", help="GGUF file both read")
    args, rest = ap.parse_known_args()

    herd = [args.herd, "bench", args.model, *rest, "--output", "json"]
    llama = [args.llama_bench, "-m", args.model, *rest, "-o", "json"]
    ratios, herd_ts, llama_ts = {}, {}, {}
    for k in range(args.rounds):
        order = [("herd", herd), ("llama", llama)]
        if k % 2:
            order.reverse()
        got = {}
        for name, cmd in order:
            got[name] = run_json(cmd)
        stamp = time.strftime("%H:%M:%S")
        for key, h in sorted(got["herd"].items()):
            l = got["llama"].get(key)
            if l is None:
                continue
            ratios.setdefault(key, []).append(h / l)
            herd_ts.setdefault(key, []).append(h)
            llama_ts.setdefault(key, []).append(l)
            print(f"{stamp} round {k + 1} ({order[0][0]} first): {key[0]} {key[1]}T "
                  f"herd {h:.2f} llama.cpp {l:.2f} t/s, {h / l:.3f}x", file=sys.stderr)

    print("| test | threads | herd t/s (median) | llama.cpp t/s (median) | ratio per round | median ratio |")
    print("| ---- | ------: | ----------------: | ---------------------: | --------------- | -----------: |")
    for key in sorted(ratios):
        rs = ratios[key]
        print(f"| {key[0]} | {key[1]} | {statistics.median(herd_ts[key]):.2f} "
              f"| {statistics.median(llama_ts[key]):.2f} "
              f"| {', '.join(f'{r:.2f}x' for r in rs)} | {statistics.median(rs):.2f}x |")


if __name__ == "__main__":
    main()
