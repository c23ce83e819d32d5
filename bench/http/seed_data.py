#!/usr/bin/env python3
"""Fills a data folder with the benchmark's schedules, through the worker's command line.

    python3 bench/http/seed_data.py --worker PATH --data-dir DIR [--schedules 50]

DIR must already hold the sample data (playlists, feed). Each schedule is imported with
`schedule_worker --data-dir DIR import-schedule` (the request on stdin), so the database is made
exactly as the servers would make it. The schedules are deterministic: a day of programmes on one
of four channels, 12 to 48 items of 15 to 60 minutes, back to back.
"""

import argparse
import datetime
import json
import random
import subprocess
import sys

CHANNELS = ["campus-tv", "campus-news", "lecture-hall", "music-tv"]
TITLES = ["Morning Bulletin", "Campus Weather", "Sports Roundup", "Student Union Report",
          "Lecture: Linear Algebra", "Lecture: Organic Chemistry", "Music Videos",
          "Film Club", "Late News", "Debate Society", "Science Hour", "Alumni Stories"]


def schedule(index: int, rng: random.Random) -> dict:
    channel = CHANNELS[index % len(CHANNELS)]
    day = datetime.date(2026, 1, 5) + datetime.timedelta(days=index)
    offset = "+01:00" if index % 3 else "Z"
    start = datetime.datetime(day.year, day.month, day.day, 6, 0, 0)
    items = []
    for position in range(rng.randint(12, 48)):
        duration = rng.choice([900, 1200, 1800, 2700, 3600])
        title = f"{rng.choice(TITLES)} #{position + 1}"
        slug = title.lower().replace(" ", "-").replace(":", "").replace("#", "")
        items.append({
            "title": title,
            "url": f"https://media.example.org/{channel}/{slug}.mp4",
            "start": start.strftime("%Y-%m-%dT%H:%M:%S") + offset,
            "duration": duration,
        })
        start += datetime.timedelta(seconds=duration)
    return {"name": f"{channel} {day.isoformat()}", "channel": channel, "items": items}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", required=True)
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--schedules", type=int, default=50)
    parser.add_argument("--seed", type=int, default=20251122)
    args = parser.parse_args()

    rng = random.Random(args.seed)
    for index in range(args.schedules):
        request = json.dumps(schedule(index, rng))
        done = subprocess.run([args.worker, "--data-dir", args.data_dir, "import-schedule"],
                              input=request.encode(), capture_output=True, timeout=60,
                              check=False)
        answer = done.stdout.decode(errors="replace").strip()
        if done.returncode != 0 or not answer.startswith('{"status":"success"'):
            print(f"seed_data: schedule {index}: exit {done.returncode}: {answer[:300]} "
                  f"{done.stderr.decode(errors='replace')[:300]}", file=sys.stderr)
            return 1
    print(f"seed_data: {args.schedules} schedules imported into {args.data_dir}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
