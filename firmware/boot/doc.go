// Command boot is Coffer's bootloader: the one image HAB signs on hardware.
// It checks the OS image against the release log before it starts it, as
// armored-witness's bootloader does:
//
//  1. reads the OS's ELF image and its proof bundle from the board's boot
//     storage (board.Booter: QEMU host files through semihosting, the USB
//     armory's eMMC boot area);
//  2. refuses to go on with a TEST policy on a device whose secure boot is
//     closed (bootcheck.CheckPolicy), then reads the minimum release
//     version for its policy's release key from the RPMB partition
//     (tos.ReadMinVersion, under the device-only RPMB key), failing closed
//     on any answer that is not authenticated and on a block another
//     release key owns;
//  3. checks the proof against the release log policy compiled into it
//     (policy.txt, which `make firmware BOOT_POLICY=FILE` copies here): the
//     release key's signature, the witnesses' cosignatures, inclusion, a
//     release for this board, the image's SHA-256 equal to the logged
//     Firmware hash, a Version not below the minimum (firmware/bootcheck);
//  4. loads the OS's segments at their link addresses (tos.LoadELF), leaves
//     the boot info for the OS at board.BootInfoStart (tos.BootInfo: the
//     OS hash, the release Version, the release key's ID), cleans and
//     invalidates the caches, turns the MMU and caches off and jumps to the
//     OS's entry point.
//
// Anything else ends in a refusal on the console and a halt (QEMU exits with
// status 1). It runs from its own memory region (board.BootStart), which
// the OS never uses, so it can load the OS at the OS's addresses.
package main
