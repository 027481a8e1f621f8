//! The conformance suite on memory, standalone and cluster.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;

use redkit_core::Redis;
use redkit_geo::conformance::Suite;
use redkit_geo::{GeoIndex, MemoryGeoIndex, RedisGeoIndex};

redkit_geo::conformance_suite!(memory, async {
    Suite::new(|_name| {
        let geo: Arc<dyn GeoIndex> = Arc::new(MemoryGeoIndex::new());
        Ok(geo)
    })
});

fn redis_suite(redis: Redis) -> Suite {
    Suite::new(move |name| {
        let prefix = redkit_testkit::prefix("geo");
        let geo: Arc<dyn GeoIndex> = Arc::new(RedisGeoIndex::with_prefix(&redis, &prefix, name)?);
        Ok(geo)
    })
}

redkit_geo::conformance_suite!(standalone, async {
    redis_suite(redkit_testkit::redis().await)
});

redkit_geo::conformance_suite!(cluster, async {
    redis_suite(redkit_testkit::cluster().redis().await)
});
