#!/usr/bin/env bash
# libfaketime: the clock-step tests and campaign run the binary with its wall clock stepped.
exec bash "$(dirname "$0")/apt-install.sh" 'ls /usr/lib/*/faketime/libfaketime.so.1' faketime
