# Sourced by test.sh: fail2ban-regex checks docs/fail2ban's filter
# against real log lines (TestFail2banFilter).
apt_install fail2ban
