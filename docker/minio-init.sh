#!/bin/sh
# One-shot set-up of MinIO for the lakehouse, run by the `minio-init` service (minio/mc image):
# the bucket, and an access key for the jobs limited to that bucket. Idempotent: a restart of the
# stack leaves existing data alone and brings the key's secret in step with .env.
set -eu

mc alias set local http://minio:9000 "${MINIO_ROOT_USER}" "${MINIO_ROOT_PASSWORD}" >/dev/null
mc mb --ignore-existing "local/${LAKEHOUSE_BUCKET}"

policy="lakehouse-${LAKEHOUSE_BUCKET}"
cat > /tmp/policy.json <<JSON
{
  "Version": "2012-10-17",
  "Statement": [
    {"Effect": "Allow",
     "Action": ["s3:GetBucketLocation", "s3:ListBucket", "s3:ListBucketMultipartUploads"],
     "Resource": ["arn:aws:s3:::${LAKEHOUSE_BUCKET}"]},
    {"Effect": "Allow",
     "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject",
                "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"],
     "Resource": ["arn:aws:s3:::${LAKEHOUSE_BUCKET}/*"]}
  ]
}
JSON
mc admin policy create local "${policy}" /tmp/policy.json
mc admin user add local "${AWS_ACCESS_KEY_ID}" "${AWS_SECRET_ACCESS_KEY}"
mc admin policy attach local "${policy}" --user "${AWS_ACCESS_KEY_ID}" 2>/dev/null \
    || echo "policy ${policy} already attached to ${AWS_ACCESS_KEY_ID}"
echo "bucket s3://${LAKEHOUSE_BUCKET} ready for ${AWS_ACCESS_KEY_ID}"
