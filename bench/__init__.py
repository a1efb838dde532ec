"""The benchmarks: each prints its figures and, with --write-results, rewrites its own
section of bench/RESULTS.md. Run them from the repository's root as modules:

    python -m bench.fanout               receivers informed of a feed, ours beside the original
    python -m bench.soak                 thousands of receivers for minutes: nothing lost
    python -m bench.publisher_cpu        the appliance's CPU against aiortc encoding itself
    python -m bench.first_frame          a new subscriber's first picture on the appliance
    python -m bench.browser_first_frame  the receiver page in headless Chromium
    python -m bench.edges                Janus CPU per subscriber with edges; one cascade hop

What they share: `rig` (the work folder, Janus, the processes under test), `servers` (the
slot servers, ours and the original), `clients` (python-socketio's client, a Janus
publisher), `receivers` (thousands of light receivers) and `results` (RESULTS.md, the
machine). `serve`, `aiortc_encoding_publisher` and `appliance_variant` run as processes
under test.
"""
