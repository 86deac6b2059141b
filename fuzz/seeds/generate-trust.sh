#!/usr/bin/env bash
# Writes the seeds of the trust fuzz targets: fuzz/seeds/trust_records/
# (MTA-STS and TLS-RPT records and a policy file, RFC 8461/8460 examples)
# and fuzz/seeds/crl_parse/ (CRLs made by openssl: empty, with revoked
# entries, PEM). Run it after changing the seeds; the output is committed.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
records="$here/trust_records"
crls="$here/crl_parse"
rm -rf "$records" "$crls"
mkdir -p "$records" "$crls"

printf 'version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.example.net\r\nmx: backupmx.example.com\r\nmax_age: 604800\r\n' >"$records/policy-enforce.txt"
printf 'version: STSv1\nmode: testing\nmx: mx.example.org\nmax_age: 86400\n' >"$records/policy-testing-lf.txt"
printf 'version: STSv1\nmode: none\nmax_age: 1\n' >"$records/policy-none.txt"
printf 'v=STSv1; id=20160831085700Z;' >"$records/sts-record.txt"
printf 'v=TLSRPTv1; rua=mailto:reports@example.com,https://reporting.example.com/v1/tlsrpt' >"$records/tlsrpt-record.txt"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
cat >ca.cnf <<CNF
[ca]
default_ca = test
[test]
dir = $work
database = $work/index.txt
new_certs_dir = $work
certificate = $work/ca.pem
private_key = $work/ca.key
crlnumber = $work/crlnumber
default_md = sha256
default_crl_days = 7
policy = any
[any]
commonName = supplied
CNF
: >index.txt
echo 01 >crlnumber
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.pem \
    -days 3650 -subj "/CN=Fuzz Seed CA" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
openssl ca -config ca.cnf -gencrl -out empty.pem 2>/dev/null
openssl crl -in empty.pem -outform DER -out "$crls/empty.der"
cp empty.pem "$crls/empty.pem"
printf 'R\t301231000000Z\t240101000000Z\t1F\tunknown\t/CN=revoked one\n' >>index.txt
printf 'R\t301231000000Z\t240102000000Z,keyCompromise\t20\tunknown\t/CN=revoked two\n' >>index.txt
openssl ca -config ca.cnf -gencrl -out two.pem 2>/dev/null
openssl crl -in two.pem -outform DER -out "$crls/two-revoked.der"
