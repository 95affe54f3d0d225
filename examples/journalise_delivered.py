#!/usr/bin/python3
"""Journalises delivered letters: a consumer of beskedhent's change feed.

Follows `beskedhent export letters` with a cursor kept in the replica, and for each letter
whose current outcome is `delivered` appends one line to a journal (a JSON Lines file standing
in for the case system, ESDH). A letter already journalised is not journalised again, so
reading the same changes twice (after a crash) does no harm; a deleted letter is noted as
such. Run it from cron or a timer after each sync:

    examples/journalise_delivered.py --config /etc/beskedhent/config.toml \\
        --journal /srv/esdh/journal.jsonl

Crash-safe by the page file: beskedhent writes each page to a file (synced, renamed into place)
before it moves the cursor, and this script deletes the page only once its journal lines are on
disk. A page left by a crash is handled first on the next run. So a change is never skipped,
and one read twice is journalised once.
"""

import argparse
import json
import os
import subprocess
import sys


def journalised(journal):
    """The message_uuids in the journal already."""
    done = set()
    if os.path.exists(journal):
        with open(journal, encoding="utf-8") as lines:
            for line in lines:
                done.add(json.loads(line)["message_uuid"])
    return done


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="beskedhent's configuration file")
    parser.add_argument("--journal", required=True, help="the journal to append to")
    parser.add_argument("--cursor", default="journal", help="the cursor's name in the replica")
    parser.add_argument("--beskedhent", default="beskedhent", help="the program")
    parser.add_argument("--page", type=int, default=1000, help="changes read at a time")
    args = parser.parse_args()
    done = journalised(args.journal)
    page_file = args.journal + ".page"
    appended = 0
    while True:
        if not os.path.exists(page_file):
            # The next page; the cursor moves once the file is complete and in place.
            subprocess.run(
                [args.beskedhent, "--config", args.config, "export", "letters",
                 "--cursor", args.cursor, "--limit", str(args.page), "--output", page_file],
                check=True,
            )
        with open(page_file, encoding="utf-8") as lines:
            page = [json.loads(line) for line in lines]
        with open(args.journal, "a", encoding="utf-8") as journal:
            for change in page:
                uuid = change["message_uuid"]
                if change["op"] == "delete":
                    print(f"letter {uuid} was deleted from the replica", file=sys.stderr)
                elif change["outcome"] == "delivered" and uuid not in done:
                    journal.write(json.dumps({
                        "message_uuid": uuid,
                        "delivered_at": change["final_at"],
                        "kanal": change["kanal"],
                        "seq": change["seq"],
                    }) + "\n")
                    done.add(uuid)
                    appended += 1
            journal.flush()
            os.fsync(journal.fileno())
        os.remove(page_file)
        if len(page) < args.page:
            break
    print(f"journalised {appended} delivered letters", file=sys.stderr)


if __name__ == "__main__":
    main()
