#!/bin/sh
# make run: serves the demo at http://127.0.0.1:8080 with its data in ./data.
# The first run creates a demo admin key and prints it once (only its hash
# is kept, in data/keys); later runs use the keys already there.
#   scripts/run-demo.sh BIN [DATA_DIR] [LISTEN]
set -eu
bin=${1:?usage: run-demo.sh BIN [DATA_DIR] [LISTEN]}
data=${2:-data}
listen=${3:-127.0.0.1:8080}

if ! "$bin" keys list --data "$data" | grep -q ' active$'; then
    key=$("$bin" keys create --data "$data" --user demo --role admin | tail -n 1)
    cat <<MSG

  A demo admin key was created (it is shown only now; data/keys keeps a hash):

      $key

  Open the live grid at http://$listen/ and sign in with it, or use it as a
  header:
      curl -H 'Authorization: Bearer $key' http://$listen/v1/models
  More keys: $bin keys create --data $data --user NAME --role viewer|editor|admin
  List or revoke them: $bin keys list|revoke --data $data ...

MSG
else
    echo "run: using the keys in $data/keys (create another with: $bin keys create --data $data --user NAME --role admin)"
    echo "run: the live grid is at http://$listen/ (sign in with a key)"
fi
exec "$bin" serve --data "$data" --listen "$listen" --demo
