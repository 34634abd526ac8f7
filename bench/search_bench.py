"""Search at scale: time GET /api/search for one user who owns every seeded conversation.

    python bench/search_bench.py [--database-url URL] [--runs 7] [--conversations 10000 --messages 500000]

Creates the database if missing, migrates it, seeds it with `seed_transcripts --users 1` (by default) when it holds
no conversations (the seed fills the search index), then asks the API as that user: one warm-up, then
--runs timed requests (median and max of the whole request) per query, plus the query count.
Prints a Markdown table for docs/benchmarks.md. Shares its helpers with bench/admin_bench.py.
"""

from admin_bench import _arguments, _machine, _measure, _seed_if_empty, _setup

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/streamchat_search_bench"
# The seed plants `kubernetes` in 0.1% of messages, `invoice` in 1.2%, `refund` in 10.8%.
QUERIES = {
    "rare word": "kubernetes",
    "medium word": "invoice",
    "common word": "refund",
    "two words": "refund invoice",
    "prefix while typing": "kuber",
    "no match": "xylophonist",
}


def main() -> None:
    args = _arguments(__doc__, DEFAULT_DATABASE_URL, users=1)
    _setup(args)
    seeding = _seed_if_empty(args)

    from django.contrib.auth import get_user_model
    from django.test import Client

    client = Client()
    client.force_login(get_user_model().objects.get(username="seed-user-0000"))

    print(f"Machine: {_machine()} ({seeding}); {args.runs} runs per query after one warm-up.\n")
    print("| Query | Median ms | Max ms | Queries |")
    print("|---|---:|---:|---:|")
    for name, words in QUERIES.items():
        median, worst, queries = _measure(client, f"/api/search?q={words}", args.runs)
        print(f"| {name} (`{words}`) | {median:.0f} | {worst:.0f} | {queries} |", flush=True)


if __name__ == "__main__":
    main()
