#!/usr/bin/env python3
"""Writes the same listening data twice for `encore bench ingest --compare`: once with integer
ids (`ints.tsv`: user, item, count) and once with string ids in the Million Song Dataset's
style (`train_triplets.txt`: 40-hex user, `SO` + 16-hex song, count). Same users, same songs,
same lines in the same order (grouped by user, users in random order as in MSD), so the two
`prep` runs differ only in the ids.

Usage: python3 scripts/gen-string-triples.py OUT_DIR [USERS] [LINES_PER_USER] [SONGS] [SEED]
Standard library only; deterministic for a seed.
"""
import os
import random
import sys


def main():
    out = sys.argv[1]
    users = int(sys.argv[2]) if len(sys.argv) > 2 else 100_000
    per_user = int(sys.argv[3]) if len(sys.argv) > 3 else 50
    songs = int(sys.argv[4]) if len(sys.argv) > 4 else 300_000
    seed = int(sys.argv[5]) if len(sys.argv) > 5 else 7
    rng = random.Random(seed)
    os.makedirs(out, exist_ok=True)
    # Zipf-like song popularity through a power of a uniform draw.
    user_ids = [rng.getrandbits(160) for _ in range(users)]
    song_ids = [rng.getrandbits(64) for _ in range(songs)]
    order = list(range(users))
    rng.shuffle(order)
    with open(os.path.join(out, "ints.tsv"), "w") as fi, \
            open(os.path.join(out, "train_triplets.txt"), "w") as fs:
        for u in order:
            n = max(1, int(per_user * (0.2 + 1.6 * rng.random())))
            seen = set()
            for _ in range(n):
                s = int(songs * rng.random() ** 3)
                if s in seen:
                    continue
                seen.add(s)
                c = 1 + int(20 * rng.random() ** 4)
                fi.write(f"{u + 1}\t{s + 1}\t{c}\n")
                fs.write(f"{user_ids[u]:040x}\tSO{song_ids[s]:016X}\t{c}\n")


if __name__ == "__main__":
    main()
