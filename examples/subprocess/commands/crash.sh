#!/bin/sh
# Kills itself with SIGSEGV, as a crashing program would end. No core file.
ulimit -c 0
echo "about to crash"
kill -SEGV $$
