#!/usr/bin/env bash
# strace: the power-loss test and campaign record the binary's file system calls.
exec bash "$(dirname "$0")/apt-install.sh" 'command -v strace' strace
