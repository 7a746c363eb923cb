package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// toolchainRoot is the folder where upstream's tamago tool (the tool
// directive in go.mod) installs the tamago-go distribution that the tamago
// module at moduleVersion builds with: tamago-go/tamago-goX.Y.Z under the
// user cache folder. firmware.mk asks for it here, so that the cache folder
// comes from os.UserCacheDir, as the tool's does, and not from make's guess
// at XDG_CACHE_HOME and HOME (which is wrong on other systems).
func toolchainRoot(moduleVersion string) (string, error) {
	dist, err := toolchainName(moduleVersion)
	if err != nil {
		return "", err
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(cache, "tamago-go", dist), nil
}

// toolchainName names the tamago-go release for a tamago module version. A
// release vX.Y.Z builds with tamago-goX.Y.Z; a pseudo-version
// vX.Y.Z-0.<time>-<commit> is a commit after release X.Y.(Z-1), which is the
// toolchain it builds with. Only v1 exists.
func toolchainName(moduleVersion string) (string, error) {
	v, _, _ := strings.Cut(moduleVersion, "+") // build metadata such as +dirty
	core, pre, pseudo := strings.Cut(v, "-")
	parts := strings.Split(strings.TrimPrefix(core, "v"), ".")
	if !strings.HasPrefix(core, "v1.") || len(parts) != 3 || (pseudo && pre == "") {
		return "", fmt.Errorf("tamago module version %q: want v1.Y.Z or a pseudo-version of one", moduleVersion)
	}
	nums := make([]int, 3)
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 || strconv.Itoa(n) != p {
			return "", fmt.Errorf("tamago module version %q: %q is not a version number", moduleVersion, p)
		}
		nums[i] = n
	}
	if pseudo {
		if nums[2] == 0 {
			return "", fmt.Errorf("tamago module version %q: a pseudo-version after no release", moduleVersion)
		}
		nums[2]--
	}
	return fmt.Sprintf("tamago-go%d.%d.%d", nums[0], nums[1], nums[2]), nil
}
