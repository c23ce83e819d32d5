#!/bin/sh
# Sleeps 3 s: longer than the example's 1 s timeout, so it is stopped (SIGTERM to its group).
echo "going to sleep for 3 s"
sleep 3
echo "woke up (never printed under a 1 s timeout)"
