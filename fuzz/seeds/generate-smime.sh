#!/bin/sh
# fuzz/seeds/generate-smime.sh — writes the seed corpus of the smime_parse
# fuzz target (fuzz/seeds/smime_parse/) with openssl and throwaway keys:
# enveloped and auth-enveloped messages (RSA and ECDH, DER and streamed
# BER in S/MIME form), detached and opaque signatures, a certs-only bundle
# and a certificate. Every seed stays under scripts/fuzz's 4096-byte
# -max_len. Run it after changing the seeds; the output is committed so the
# corpus is the same everywhere.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out="$here/smime_parse"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
rm -rf "$out"
mkdir -p "$out"
cd "$tmp"

openssl req -x509 -newkey rsa:1024 -nodes -keyout rsa.key -out rsa.pem -days 3650 \
    -subj "/CN=seed/emailAddress=seed@example.org" -addext "subjectAltName=email:seed@example.org" 2>/dev/null
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ec.key -out ec.pem \
    -days 3650 -subj "/CN=seed-ec" -addext "keyUsage=digitalSignature,keyAgreement" 2>/dev/null
printf 'Content-Type: text/plain\r\n\r\nseed\r\n' > msg.txt

# Raw CMS (DER, and BER from -stream).
openssl cms -encrypt -binary -aes-128-cbc -outform DER -in msg.txt -out "$out/enveloped_rsa.der" rsa.pem
openssl cms -encrypt -binary -aes-256-gcm -outform DER -in msg.txt -out "$out/authenveloped_rsa.der" rsa.pem
openssl cms -encrypt -binary -aes-128-cbc -outform DER -in msg.txt -out "$out/enveloped_ecdh.der" ec.pem
openssl cms -encrypt -binary -aes-128-cbc -stream -outform DER -in msg.txt -out "$out/enveloped_ber.der" rsa.pem
openssl cms -sign -binary -nodetach -outform DER -signer ec.pem -inkey ec.key -in msg.txt \
    -out "$out/signed_opaque.der"
openssl crl2pkcs7 -nocrl -certfile ec.pem -outform DER -out "$out/certs_only.der"
openssl x509 -in ec.pem -outform DER -out "$out/cert.der"

# Whole messages.
openssl cms -encrypt -binary -aes-256-gcm -stream -in msg.txt -out enc.eml ec.pem
{ printf 'From: seed@example.org\r\n'; cat enc.eml; } > "$out/message_enveloped.eml"
openssl cms -sign -binary -signer ec.pem -inkey ec.key -in msg.txt -out sig.eml
{ printf 'From: seed@example.org\r\n'; cat sig.eml; } > "$out/message_signed.eml"
printf 'Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: 8bit\r\n\r\nseed\r\n--b--\r\n' \
    > "$out/message_multipart.eml"

for f in "$out"/*; do
    [ "$(wc -c < "$f")" -le 4096 ] || { echo "seed $f is over 4096 bytes" >&2; exit 1; }
done
echo "generate-smime: wrote $out"
