//! End-to-end tests of the gateway against a real Iggy server.
//!
//! One iggy-server is shared by every test of this binary (each test uses its
//! own stream names); tests that kill Iggy start a private one. Without an
//! iggy-server (`IGGY_TEST_ADDRESS`, `IGGY_SERVER_BIN`, `PATH`, or the build
//! kept in `../shared/iggy-server/`), the tests that need Iggy are reported
//! as ignored and a loud line says so.

mod admin;
mod cli;
mod consume;
mod docs;
mod edge;
mod embedded;
mod health;
mod http;
mod idempotent;
mod iggy_facts;
mod mesh;
mod moving;
mod not_found;
mod outcome;
mod pool;
mod proto_rules;
mod publish;
mod redelivery;
mod reflection;
mod refusals;
mod replicas;
mod resilience;
mod subscribe;
mod support;

use libtest_mimic::{Arguments, Trial};
use std::{process::ExitCode, sync::Arc};
use support::{Env, SharedIggy, TEST_TIMEOUT, TestBody};

/// Every test that needs a real Iggy: (name, body).
fn iggy_tests() -> Vec<(&'static str, TestBody)> {
    let mut tests = Vec::new();
    tests.extend(admin::tests());
    tests.extend(health::tests());
    tests.extend(iggy_facts::tests());
    tests.extend(pool::tests());
    tests.extend(publish::tests());
    tests.extend(outcome::tests());
    tests.extend(idempotent::tests());
    tests.extend(subscribe::tests());
    tests.extend(consume::tests());
    tests.extend(redelivery::tests());
    tests.extend(resilience::tests());
    tests.extend(embedded::tests());
    tests.extend(reflection::tests());
    tests.extend(refusals::tests());
    tests.extend(replicas::tests());
    tests.extend(moving::tests());
    tests.extend(mesh::tests());
    tests.extend(not_found::tests());
    tests.extend(proto_rules::tests());
    tests.extend(edge::tests());
    tests.extend(http::iggy_tests());
    tests
}

fn main() -> ExitCode {
    let args = Arguments::from_args();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let iggy = runtime.block_on(SharedIggy::find_or_start()).map(Arc::new);
    if iggy.is_none() {
        eprintln!(
            "\n!!! NO IGGY SERVER: the real-Iggy tests did NOT run. Put iggy-server on PATH, \
             set IGGY_SERVER_BIN, or set IGGY_TEST_ADDRESS. !!!\n"
        );
    }

    let mut trials: Vec<Trial> = cli::tests();
    trials.extend(docs::tests());
    trials.extend(http::tests());
    for (name, body) in iggy_tests() {
        let trial = match &iggy {
            Some(iggy) => {
                let env = Env {
                    iggy: Arc::clone(iggy),
                };
                let handle = runtime.handle().clone();
                Trial::test(name, move || {
                    handle.block_on(async move {
                        match tokio::time::timeout(TEST_TIMEOUT, body(env)).await {
                            Ok(()) => Ok(()),
                            Err(_) => Err(format!("timed out after {TEST_TIMEOUT:?}").into()),
                        }
                    })
                })
            }
            None => Trial::test(name, || Ok(())).with_ignored_flag(true),
        };
        trials.push(trial);
    }

    let conclusion = libtest_mimic::run(&args, trials);
    if let Some(iggy) = iggy {
        match Arc::into_inner(iggy) {
            Some(iggy) => runtime.block_on(iggy.stop()),
            None => eprintln!("warning: the shared iggy-server is still referenced; not stopped"),
        }
    }
    conclusion.exit_code()
}
