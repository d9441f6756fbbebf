"""What the tests do with an S3 bucket, whichever store holds it (SeaweedFS,
Garage): reach it with boto3, list it, tell when it serves, and point a
Satchel at it. A store's harness sets `endpoint`, `region`, `access_key` and
`secret_key`."""

import boto3
from botocore.config import Config as BotoConfig

BUCKET = "satchel"


class S3Bucket:
    endpoint = region = access_key = secret_key = None

    def client(self):
        return boto3.client(
            "s3", endpoint_url=self.endpoint, region_name=self.region,
            aws_access_key_id=self.access_key, aws_secret_access_key=self.secret_key,
            config=BotoConfig(s3={"addressing_style": "path"}, retries={"max_attempts": 1},
                              connect_timeout=5, read_timeout=30))

    def keys(self):
        """Every object key in the bucket."""
        listed = self.client().list_objects_v2(Bucket=BUCKET)
        return [item["Key"] for item in listed.get("Contents", [])]

    def answers(self):
        """Whether an object can be written and read back: stores answer
        their S3 API before they take and serve data."""
        probe = b"satchel-test-probe"
        try:
            client = self.client()
            client.put_object(Bucket=BUCKET, Key="probe/ready", Body=probe)
            ready = client.get_object(Bucket=BUCKET, Key="probe/ready")["Body"].read() == probe
            client.delete_object(Bucket=BUCKET, Key="probe/ready")
            return ready
        except Exception:
            return False

    def satchel_config(self):
        """The overrides that point a Satchel at this bucket."""
        return {"storage": {"backend": "s3"},
                "storage.s3": {"endpoint": self.endpoint, "region": self.region,
                               "bucket": BUCKET, "access_key_id": self.access_key,
                               "secret_access_key": self.secret_key}}
