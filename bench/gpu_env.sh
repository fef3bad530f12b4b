# Sourced by bench/gpu_run.sh and bench/gpu_scaling.sh: installs the payload's wheels (and tools)
# where the machine has no package index, and points fraudscore at the payload's data.
# Sets: payload (absolute), py, PYTHONPATH, FRAUDSCORE_DATA_DIR, PYSPY (when a py-spy wheel came).
payload=$(cd "${1:-.gpu/payload}" && pwd)
py=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
site=/tmp/fraudscore-site
wheels=$(compgen -G "$payload/wheels/*.whl" || true)
tools=$(compgen -G "$payload/tools/*.whl" || true)
if [ -n "$wheels$tools" ]; then
    # shellcheck disable=SC2086
    $py -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target $site \
        $wheels $tools
    export PYTHONPATH=$site${PYTHONPATH:+:$PYTHONPATH}
fi
if [ -x $site/bin/py-spy ]; then
    export PYSPY=$site/bin/py-spy
fi
if [ -d "$payload/bundles" ]; then  # the suite's trained bundles (bench/.cache/bundles)
    mkdir -p bench/.cache/bundles
    for b in "$payload"/bundles/*; do
        [ -e "bench/.cache/bundles/$(basename "$b")" ] || cp -r "$b" bench/.cache/bundles/
    done
fi
export FRAUDSCORE_DATA_DIR=$payload/data
