//! Says at build time which tests will not run on this machine, because a
//! tool they need is missing, and what to install (one cargo warning line).

#[allow(dead_code)]
#[path = "src/tools.rs"]
mod tools;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=src/tools.rs");
    println!("cargo:rerun-if-env-changed=PATH");
    println!("cargo:rerun-if-env-changed=CHROMIUM");
    println!("cargo:rerun-if-env-changed={}", tools::REQUIRE_TOOLS);
    if let Some(summary) = tools::not_run_summary()
        && !tools::tools_required()
    {
        println!("cargo:warning={summary}");
    }
}
