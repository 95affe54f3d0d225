#!/usr/bin/env python3
"""The peer of the scale benchmark: a batched Python client of the kind other Beskedfordeler
users write (pika + sqlite3), doing the same job as `beskedhent sync`: it consumes a queue over
TLS with SASL EXTERNAL, parses each envelope and its base64 PKO_PostStatus payload
(ElementTree), stores the envelope under its BeskedId and the status's fields in a table indexed
by letter, commits every BATCH messages (synchronous=FULL, so a commit is on disk) and then
acknowledges them at once: the same promise as beskedhent's, acknowledgement after commit.
Prints the seconds it took to store COUNT.

usage: pika_peer.py HOST PORT CA CERT KEY QUEUE COUNT DATABASE [BATCH] [PREFETCH]
"""

import base64
import sqlite3
import ssl
import sys
import time

import xml.etree.ElementTree as ET

import pika

KUVERT = "{urn:oio:besked:kuvert:1.0}"
SAGDOK = "{urn:oio:sagdok:3.0.0}"
BASE64 = "{urn:besked:kuvert:1.0}Base64"
STATUS = "{http://serviceplatformen.dk/xml/print/PKO_PostStatus/1/types}"
FIELDS = ("MessageUUID", "KanalKode", "TransaktionsStatusKode", "TransaktionsDatoTid",
          "FejlKode", "FejlTekst")


def decode(body):
    """The BeskedId and the status's fields of one envelope."""
    envelope = ET.fromstring(body)
    besked_id = envelope.findtext(f"{KUVERT}BeskedId/{SAGDOK}UUIDIdentifikator").strip().lower()
    payload = ET.fromstring(base64.b64decode(envelope.find(f".//{BASE64}").text))
    return besked_id, tuple(payload.findtext(f".//{STATUS}{name}") for name in FIELDS)


def main():
    host, port, ca, cert, key, queue, count, database = sys.argv[1:9]
    port, count = int(port), int(count)
    batch = int(sys.argv[9]) if len(sys.argv) > 9 else 1000
    prefetch = int(sys.argv[10]) if len(sys.argv) > 10 else 2000
    context = ssl.create_default_context(cafile=ca)
    context.load_cert_chain(cert, key)
    parameters = pika.ConnectionParameters(
        host=host,
        port=port,
        virtual_host="BF",
        credentials=pika.credentials.ExternalCredentials(),
        ssl_options=pika.SSLOptions(context, host),
    )
    db = sqlite3.connect(database)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.executescript(
        "CREATE TABLE IF NOT EXISTS message (seq INTEGER PRIMARY KEY,"
        " besked_id TEXT UNIQUE NOT NULL, envelope BLOB NOT NULL);"
        "CREATE TABLE IF NOT EXISTS status (seq INTEGER PRIMARY KEY, message_uuid TEXT,"
        " kanal TEXT, status TEXT, occurred_at TEXT, fejl_kode TEXT, fejl_tekst TEXT);"
        "CREATE INDEX IF NOT EXISTS status_by_letter ON status (message_uuid);"
    )
    connection = pika.BlockingConnection(parameters)
    channel = connection.channel()
    channel.basic_qos(prefetch_count=prefetch)
    started = time.monotonic()
    rows, received, last = [], 0, None
    for method, _properties, body in channel.consume(queue, inactivity_timeout=10):
        if method is None:
            break
        rows.append((decode(body), body))
        last = method.delivery_tag
        received += 1
        if len(rows) >= batch or received == count:
            for (besked_id, fields), envelope in rows:
                stored = db.execute(
                    "INSERT OR IGNORE INTO message (besked_id, envelope) VALUES (?, ?)",
                    (besked_id, envelope),
                )
                if stored.rowcount:
                    db.execute(
                        "INSERT INTO status (seq, message_uuid, kanal, status, occurred_at,"
                        " fejl_kode, fejl_tekst) VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (stored.lastrowid, *fields),
                    )
            db.commit()
            channel.basic_ack(last, multiple=True)
            rows = []
        if received == count:
            break
    seconds = time.monotonic() - started
    channel.cancel()
    connection.close()
    stored = db.execute("SELECT count(*) FROM message").fetchone()[0]
    if stored != count:
        sys.exit(f"stored {stored} of {count}")
    print(f"{seconds:.3f} s from the first delivery")


if __name__ == "__main__":
    main()
