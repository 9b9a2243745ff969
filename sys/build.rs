//! Build script: with the `dpdk` feature, generate bindings to the system's DPDK (found with
//! `pkg-config libdpdk`) and compile the C shim for DPDK's static inline functions.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    #[cfg(feature = "dpdk")]
    dpdk::build();
}

#[cfg(feature = "dpdk")]
mod dpdk {
    use std::path::PathBuf;
    use std::process::Command;

    fn pkg_config(arg: &str) -> Vec<String> {
        let out = Command::new("pkg-config")
            .args([arg, "libdpdk"])
            .output()
            .unwrap_or_else(|e| panic!("running pkg-config: {e}; install pkg-config (make deps)"));
        if !out.status.success() {
            panic!(
                "feature `dpdk`: `pkg-config {arg} libdpdk` failed ({}). Install libdpdk-dev, \
                 libclang-dev and pkg-config (`make deps`), or build without `--features dpdk`.",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        // Split on whitespace, keeping `-include <file>` as two arguments.
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    }

    pub fn build() {
        println!("cargo:rerun-if-changed=shim/akg_dpdk_shim.c");
        println!("cargo:rerun-if-changed=shim/akg_dpdk_shim.h");
        println!("cargo:rerun-if-env-changed=PKG_CONFIG_PATH");
        let cflags = pkg_config("--cflags");

        let mut cc = cc::Build::new();
        cc.file("shim/akg_dpdk_shim.c")
            .include("shim")
            .warnings(false);
        for f in &cflags {
            cc.flag(f);
        }
        cc.compile("akg_dpdk_shim");

        // After the shim so the linker resolves the shim's references to DPDK.
        for l in pkg_config("--libs") {
            if let Some(lib) = l.strip_prefix("-l") {
                println!("cargo:rustc-link-lib=dylib={lib}");
            } else if let Some(dir) = l.strip_prefix("-L") {
                println!("cargo:rustc-link-search=native={dir}");
            }
        }

        let bindings = bindgen::Builder::default()
            .header("shim/akg_dpdk_shim.h")
            .clang_args(&cflags)
            .allowlist_function("akg_.*")
            .allowlist_function("rte_eal_init")
            .allowlist_function("rte_eal_cleanup")
            .allowlist_function("rte_strerror")
            .allowlist_function("rte_socket_id")
            .allowlist_function("rte_thread_register")
            .allowlist_function("rte_eth_dev_get_port_by_name")
            .allowlist_function("rte_eth_dev_socket_id")
            .allowlist_function("rte_eth_dev_info_get")
            .allowlist_function("rte_eth_dev_configure")
            .allowlist_function("rte_eth_dev_adjust_nb_rx_tx_desc")
            .allowlist_function("rte_eth_rx_queue_setup")
            .allowlist_function("rte_eth_tx_queue_setup")
            .allowlist_function("rte_eth_dev_start")
            .allowlist_function("rte_eth_dev_stop")
            .allowlist_function("rte_eth_dev_close")
            .allowlist_function("rte_eth_promiscuous_enable")
            .allowlist_function("rte_eth_macaddr_get")
            .allowlist_function("rte_eth_dev_get_mtu")
            .allowlist_function("rte_eth_stats_get")
            .allowlist_function("rte_eth_dev_rss_hash_conf_get")
            .allowlist_function("rte_eth_dev_rss_reta_query")
            .allowlist_type("rte_eth_rss_reta_entry64")
            .allowlist_function("rte_pktmbuf_pool_create")
            .allowlist_function("rte_mempool_free")
            .allowlist_type("rte_eth_conf")
            .allowlist_type("rte_eth_dev_info")
            .allowlist_type("rte_eth_stats")
            .allowlist_type("rte_ether_addr")
            .allowlist_var("RTE_ETH_MQ_RX_.*")
            .opaque_type("rte_mbuf")
            .opaque_type("rte_mempool")
            .derive_default(true)
            .layout_tests(false)
            .generate_comments(false)
            .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()))
            .generate()
            .expect("bindgen failed on the DPDK headers; is libclang-dev installed?");
        let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
        bindings
            .write_to_file(out.join("dpdk_bindings.rs"))
            .expect("writing DPDK bindings");
    }
}
