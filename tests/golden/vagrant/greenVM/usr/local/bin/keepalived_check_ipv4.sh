#!/bin/bash

/usr/bin/ping -c 1 -W 1 9.9.9.9 > /dev/null 2>&1
