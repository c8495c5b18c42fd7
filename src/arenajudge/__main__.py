"""``python -m arenajudge``, which also lets ``accelerate launch -m arenajudge`` work."""

from arenajudge._entry import main

if __name__ == "__main__":
    main()
