#!/bin/sh
# Reports an error on standard error and exits with status 2.
echo "fails.sh: something went wrong" >&2
exit 2
