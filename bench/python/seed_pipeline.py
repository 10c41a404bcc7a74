"""The first seed's program (tutorial-multiprocessing-python.md), as written there, with a sentinel
to end it and without the per-item prints: web -> queue1 -> process1 (square) -> queue2 ->
process2 (square root) -> queue3 -> db (sum). Each stage is its own OS process.

    python3 seed_pipeline.py N      prints "N SUM"
"""
import math
import multiprocessing
import sys

SENTINEL = None


def f1(value):
    return value ** 2


def f2(value):
    return math.sqrt(value)


def process_init(queue_in, count):
    for val in range(0, count):
        queue_in.put(val)
    queue_in.put(SENTINEL)


def process1(queue_in, queue_out):
    while True:
        tmp = queue_in.get()
        if tmp is SENTINEL:
            queue_out.put(SENTINEL)
            break
        queue_out.put(f1(tmp))


def process2(queue_in, queue_out):
    while True:
        tmp = queue_in.get()
        if tmp is SENTINEL:
            queue_out.put(SENTINEL)
            break
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
    queue1, queue2, queue3, result = (multiprocessing.Queue() for _ in range(4))
    workers = [
        multiprocessing.Process(target=process_init, args=(queue1, count)),
        multiprocessing.Process(target=process1, args=(queue1, queue2)),
        multiprocessing.Process(target=process2, args=(queue2, queue3)),
        multiprocessing.Process(target=db, args=(queue3, result)),
    ]
    for w in workers:
        w.start()
    items, total = result.get()
    for w in workers:
        w.join()
    print(f"{items} {total:.0f}")
