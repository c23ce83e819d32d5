#!/bin/sh
# Says hello on standard output and exits 0.
echo "hello from $(basename "$0"), pid $$"
