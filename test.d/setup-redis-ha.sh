# Sourced by test.sh: starts the shared Redis high-availability topologies
# of the test run (test.d/redis-ha.sh, private ports and directories):
# a Sentinel setup (master, replica, 3 sentinels) and a 3-master Cluster
# with one replica each. The store and throttle conformance suites run on
# both through REDIS_SENTINEL_MASTER, REDIS_SENTINEL_ADDRS and
# REDIS_CLUSTER_ADDRS. Tests that fail a master over start their own.
apt_install redis-server redis-tools

redis_ha_dir=$(mktemp -d /tmp/token-auth-redis-ha.XXXXXX)
cleanups+=("bash test.d/redis-ha.sh stop $redis_ha_dir/sentinel; bash test.d/redis-ha.sh stop $redis_ha_dir/cluster; rm -rf $redis_ha_dir")
for topology in sentinel cluster; do
	while IFS= read -r line; do
		case $line in
		REDIS_*=*) export "${line?}" ;;
		esac
	done < <(bash test.d/redis-ha.sh "$topology" "$redis_ha_dir/$topology")
done
if [ -z "${REDIS_SENTINEL_ADDRS:-}" ] || [ -z "${REDIS_CLUSTER_ADDRS:-}" ]; then
	echo "could not start the Redis Sentinel and Cluster topologies" >&2
	exit 1
fi
echo "redis sentinel: master $REDIS_SENTINEL_MASTER via $REDIS_SENTINEL_ADDRS; redis cluster: $REDIS_CLUSTER_ADDRS (data in $redis_ha_dir)"
