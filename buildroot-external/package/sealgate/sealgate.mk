################################################################################
#
# sealgate
#
################################################################################

# The release tag of this repository. Buildroot clones it, vendors the crates
# of Cargo.lock into the tarball at download time (cargo-package
# infrastructure), so the build itself runs with `cargo --offline --locked`.
# For a build from a working tree, set SEALGATE_OVERRIDE_SRCDIR in local.mk
# to a checkout that carries vendored crates (`cargo vendor`, see
# image/README.md).
SEALGATE_VERSION = v0.1.0
SEALGATE_SITE = https://example.invalid/sealgate.git
SEALGATE_SITE_METHOD = git
SEALGATE_SUBDIR = daemon
SEALGATE_LICENSE = AGPL-3.0-or-later
SEALGATE_LICENSE_FILES = LICENSE
SEALGATE_DEPENDENCIES = softhsm2

# The daemon's own user; the uid matches board/sealgate's sysusers.d file so
# files on the data partition keep their owner across image builds.
define SEALGATE_USERS
	sealgate 901 sealgate 901 * /var/lib/sealgate - - Sealgate gateway
endef

$(eval $(cargo-package))
