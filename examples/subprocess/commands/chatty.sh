#!/bin/sh
# Prints about 1 MB on standard output: far past the example's 64 KiB output cap.
yes "chatty.sh: all work and no play makes a long line of output" | head -n 16384
