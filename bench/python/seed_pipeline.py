"""The first seed's program (tutorial-multiprocessing-python.md), with a sentinel to end it:
web -> queue1 -> process1 (square) -> queue2 -> process2 (square root) -> queue3 -> db (sum).
Each stage is its own OS process, as in the seed.

    python3 seed_pipeline.py N            as written in the seed: prints every item to stdout
    python3 seed_pipeline.py N --quiet    the same without the per-item prints

The summary goes to stderr, in the Tutorial example's words: "db: N items, sum of roots S".
"""
import math
import multiprocessing
import sys

SENTINEL = None


def f1(value):
    return value ** 2


def f2(value):
    return math.sqrt(value)


def process_init(queue_in, count, verbose):
    for val in range(0, count):
        if verbose:
            print("entering the Q : ", val)
        queue_in.put(val)
    queue_in.put(SENTINEL)


def process1(queue_in, queue_out, verbose):
    while True:
        tmp = queue_in.get()
        if tmp is SENTINEL:
            queue_out.put(SENTINEL)
            break
        if verbose:
            print("tmp process1 : ", tmp)
        queue_out.put(f1(tmp))


def process2(queue_in, queue_out, verbose):
    while True:
        tmp = queue_in.get()
        if tmp is SENTINEL:
            queue_out.put(SENTINEL)
            break
        if verbose:
            print("tmp process2 : ", f2(tmp))
        queue_out.put(f2(tmp))


def db(queue_in, result):
    count, total = 0, 0.0
    while True:
        tmp = queue_in.get()
        if tmp is SENTINEL:
            break
        count += 1
        total += tmp
    result.put((count, total))


if __name__ == "__main__":
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    verbose = "--quiet" not in sys.argv[2:]
    queue1, queue2, queue3, result = (multiprocessing.Queue() for _ in range(4))
    workers = [
        multiprocessing.Process(target=process_init, args=(queue1, count, verbose)),
        multiprocessing.Process(target=process1, args=(queue1, queue2, verbose)),
        multiprocessing.Process(target=process2, args=(queue2, queue3, verbose)),
        multiprocessing.Process(target=db, args=(queue3, result)),
    ]
    for w in workers:
        w.start()
    items, total = result.get()
    for w in workers:
        w.join()
    print(f"db: {items} items, sum of roots {total:.0f}", file=sys.stderr)
